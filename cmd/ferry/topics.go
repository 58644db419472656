package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ferrymsg/ferry/amqp"
)

func newTopics(ios *ioStreams) *cobra.Command {
	var (
		js       bool
		internal bool
	)
	cmd := &cobra.Command{
		Use:   "topics <url>",
		Short: "List topics (Kafka); create one (Kafka and RabbitMQ)",
		Long: `topics lists the cluster's topics with their partition count and
replication factor (Kafka). RabbitMQ's AMQP protocol has no way to list
exchanges (that takes the management plugin's HTTP API or rabbitmqctl
list_exchanges), so on RabbitMQ topics only creates.`,
		Example: `  ferry topics kafka://127.0.0.1:9092
  ferry topics create kafka://127.0.0.1:9092 orders --partitions 12`,
		Args: exactArgs("url"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			if !b.kafka {
				return fmt.Errorf("listing topics needs Kafka: AMQP cannot list RabbitMQ's exchanges (use rabbitmqctl list_exchanges)")
			}
			tds, err := kadm.NewClient(b.KafkaClient()).ListTopics(cmd.Context())
			if err != nil {
				return fmt.Errorf("list topics on %s: %w", b, err)
			}
			names := tds.Names()
			sort.Strings(names)
			out := output{w: ios.out, json: js}
			var rows [][]string
			for _, n := range names {
				td := tds[n]
				if td.IsInternal && !internal {
					continue
				}
				rf := td.Partitions.NumReplicas()
				if js {
					if err := out.line(map[string]any{"topic": n, "partitions": len(td.Partitions), "replication": rf}); err != nil {
						return err
					}
					continue
				}
				rows = append(rows, []string{n, strconv.Itoa(len(td.Partitions)), strconv.Itoa(rf)})
			}
			if js {
				return nil
			}
			return out.table([]string{"TOPIC", "PARTITIONS", "REPLICATION"}, rows)
		},
	}
	cmd.Flags().BoolVar(&js, "json", false, "one JSON object per topic")
	cmd.Flags().BoolVar(&internal, "internal", false, "include Kafka's internal topics (__consumer_offsets, ...)")
	cmd.AddCommand(newTopicsCreate(ios))
	return cmd
}

func newTopicsCreate(ios *ioStreams) *cobra.Command {
	var (
		partitions  int32
		replication int16
	)
	cmd := &cobra.Command{
		Use:   "create <url> <topic>",
		Short: "Create a topic: a Kafka topic with partitions, or a RabbitMQ exchange",
		Long: `create makes a topic: on Kafka a topic with --partitions and
--replication (-1: the broker's default); on RabbitMQ the durable topic
exchange that ferry's publishers and subscribers use (RabbitMQ has no
partitions: --partitions is refused there). Creating a topic that exists
is an error.`,
		Example: `  ferry topics create kafka://127.0.0.1:9092 orders --partitions 12 --replication 3
  ferry topics create amqp://guest:guest@127.0.0.1:5672/ orders`,
		Args: exactArgs("url", "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if partitions < 1 || replication == 0 || replication < -1 {
				return usagef("--partitions must be at least 1, --replication at least 1 or -1")
			}
			b, err := open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			topic := args[1]
			if !b.kafka {
				if cmd.Flags().Changed("partitions") || cmd.Flags().Changed("replication") {
					return usagef("RabbitMQ has no partitions or replication factor for an exchange: drop --partitions and --replication")
				}
				conn, err := dialAMQP(b)
				if err != nil {
					return err
				}
				defer conn.Close()
				if checkExchange(conn, topic) == nil {
					return fmt.Errorf("topic %q exists on %s", topic, b)
				}
				ch, err := conn.Channel()
				if err != nil {
					return err
				}
				defer ch.Close()
				if err := ch.ExchangeDeclare(topic, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
					return fmt.Errorf("create exchange %q: %w", topic, err)
				}
				_, err = fmt.Fprintf(ios.out, "created topic %s (a durable topic exchange) on %s\n", topic, b)
				return err
			}
			resp, err := kadm.NewClient(b.KafkaClient()).CreateTopic(cmd.Context(), partitions, replication, nil, topic)
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				if strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
					return fmt.Errorf("topic %q exists on %s", topic, b)
				}
				return fmt.Errorf("create topic %q: %w", topic, err)
			}
			_, err = fmt.Fprintf(ios.out, "created topic %s with %d partitions on %s\n", topic, partitions, b)
			return err
		},
	}
	cmd.Flags().Int32Var(&partitions, "partitions", 8, "Kafka: the number of partitions")
	cmd.Flags().Int16Var(&replication, "replication", -1, "Kafka: the replication factor (-1: the broker's default)")
	return cmd
}
