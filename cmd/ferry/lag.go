package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newLag(ios *ioStreams) *cobra.Command {
	var js bool
	cmd := &cobra.Command{
		Use:   "lag <url> <group> [<topic>]",
		Short: "Show a consumer group's lag (Kafka) or queue depth (RabbitMQ)",
		Long: `lag shows how far a group is behind. On Kafka: per partition, the
committed offset, the end offset, the lag and the member that owns it,
for every topic the group has offsets on (or only <topic>). On RabbitMQ:
the messages ready in each of the group's queues on <topic> (required:
the queues are named <topic>.<group>.<shard>) and their consumers.`,
		Example: `  ferry lag kafka://127.0.0.1:9092 billing
  ferry lag amqp://guest:guest@127.0.0.1:5672/ billing orders --json`,
		Args: rangeArgs([]string{"url", "group"}, "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := open(ctx, args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			group, topic := args[1], ""
			if len(args) == 3 {
				topic = args[2]
			}
			out := output{w: ios.out, json: js}
			if !b.kafka {
				if topic == "" {
					return usagef("on RabbitMQ, lag needs the topic: the group's queues are named <topic>.<group>.<shard>")
				}
				conn, err := dialAMQP(b)
				if err != nil {
					return err
				}
				defer conn.Close()
				qs, err := groupQueues(conn, topic, group)
				if err != nil {
					return err
				}
				var rows [][]string
				total := 0
				for _, q := range qs {
					total += q.messages
					if js {
						if err := out.line(map[string]any{"topic": topic, "group": group, "queue": q.name, "messages": q.messages, "consumers": q.consumers}); err != nil {
							return err
						}
						continue
					}
					rows = append(rows, []string{q.name, strconv.Itoa(q.messages), strconv.Itoa(q.consumers)})
				}
				if js {
					return nil
				}
				if err := out.table([]string{"QUEUE", "MESSAGES", "CONSUMERS"}, rows); err != nil {
					return err
				}
				_, err = fmt.Fprintf(ios.out, "total %d messages in %d queues\n", total, len(qs))
				return err
			}
			lags, err := kadm.NewClient(b.KafkaClient()).Lag(ctx, group)
			if err != nil {
				return fmt.Errorf("lag of group %q: %w", group, err)
			}
			l, ok := lags[group]
			if !ok {
				return fmt.Errorf("group %q not found on %s", group, b)
			}
			if err := l.Error(); err != nil {
				if errors.Is(err, kerr.GroupIDNotFound) {
					return fmt.Errorf("group %q not found on %s", group, b)
				}
				return fmt.Errorf("group %q: %w", group, err)
			}
			if l.State == "Dead" || len(l.Lag) == 0 {
				return fmt.Errorf("group %q not found on %s (no members and no committed offsets)", group, b)
			}
			all := l.Lag.Sorted()
			sort.SliceStable(all, func(i, j int) bool { return all[i].Topic < all[j].Topic })
			var rows [][]string
			var total int64
			seen := false
			for _, m := range all {
				if topic != "" && m.Topic != topic {
					continue
				}
				seen = true
				member := "-"
				if m.Member != nil {
					member = m.Member.ClientID + " " + m.Member.ClientHost
				}
				total += max(m.Lag, 0)
				if js {
					if err := out.line(map[string]any{"group": group, "topic": m.Topic, "partition": m.Partition, "committed": m.Commit.At, "end": m.End.Offset, "lag": m.Lag, "member": member}); err != nil {
						return err
					}
					continue
				}
				committed := "-" // nothing committed
				if m.Commit.At >= 0 {
					committed = strconv.FormatInt(m.Commit.At, 10)
				}
				rows = append(rows, []string{m.Topic, strconv.Itoa(int(m.Partition)), committed, strconv.FormatInt(m.End.Offset, 10), strconv.FormatInt(m.Lag, 10), member})
			}
			if !seen {
				return fmt.Errorf("group %q has no offsets on topic %q", group, topic)
			}
			if js {
				return nil
			}
			if err := out.table([]string{"TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"}, rows); err != nil {
				return err
			}
			_, err = fmt.Fprintf(ios.out, "group %s (%s): total lag %d\n", group, l.State, total)
			return err
		},
	}
	cmd.Flags().BoolVar(&js, "json", false, "one JSON object per partition or queue")
	return cmd
}
