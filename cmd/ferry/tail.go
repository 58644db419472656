package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/message"
)

type tailFlags struct {
	from, key, grep, bindingKey string
	json                        bool
	max                         int
}

func newTail(io *ioStreams) *cobra.Command {
	var f tailFlags
	cmd := &cobra.Command{
		Use:   "tail <url> <topic>",
		Short: "Print a topic's messages as they arrive, without consuming them away from anyone",
		Long: `tail prints a topic's messages as they arrive, one per line (or one
JSON object per line with --json), until Ctrl-C or --max.

It takes nothing away from the topic's consumers and moves no group's
offsets. On Kafka it reads the partitions directly, in no consumer group,
and commits nothing; --from says where it starts. On RabbitMQ it declares
a temporary, exclusive, auto-delete queue bound to the topic's exchange
(deleted when tail stops), so it sees copies of the messages published
from then on; an exchange keeps no history, so --from is Kafka only.`,
		Example: `  ferry tail kafka://127.0.0.1:9092 orders --from -5
  ferry tail kafka://127.0.0.1:9092 orders --from 2026-12-02T03:00:00Z --grep 'LAMP' --json
  ferry tail amqp://guest:guest@127.0.0.1:5672/ orders --key alice`,
		Args: exactArgs("url", "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var re *regexp.Regexp
			if f.grep != "" {
				var err error
				if re, err = regexp.Compile(f.grep); err != nil {
					return usagef("--grep: %v", err)
				}
			}
			if f.max < 0 {
				return usagef("--max %d: want 0 (no limit) or more", f.max)
			}
			from, err := parseFrom(f.from)
			if err != nil {
				return err
			}
			b, err := open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			if !b.kafka && cmd.Flags().Changed("from") && f.from != "latest" {
				return usagef("--from %s: a RabbitMQ exchange keeps no history; tail shows the messages published from now on", f.from)
			}
			out := output{w: io.out, json: f.json}
			n := 0
			show := func(m *message.Message) (bool, error) {
				if f.key != "" && m.Key != f.key {
					return true, nil
				}
				if re != nil && !re.Match(m.Payload) {
					return true, nil
				}
				if err := printMessage(out, m); err != nil {
					return false, err
				}
				n++
				return f.max == 0 || n < f.max, nil
			}
			topic := args[1]
			if b.kafka {
				err = tailKafka(cmd.Context(), b, topic, from, io, show)
			} else {
				err = tailAMQP(cmd.Context(), b, topic, f.bindingKey, io, show)
			}
			if errors.Is(err, context.Canceled) && cmd.Context().Err() != nil {
				return nil // Ctrl-C: the normal way to stop tail
			}
			return err
		},
	}
	cmd.Flags().StringVar(&f.from, "from", "latest", "Kafka: where to start: earliest, latest, -N (the last N of each partition) or an RFC 3339 time")
	cmd.Flags().StringVar(&f.key, "key", "", "show only messages with this key")
	cmd.Flags().StringVar(&f.grep, "grep", "", "show only messages whose payload matches this regular expression")
	cmd.Flags().BoolVar(&f.json, "json", false, "one JSON object per message")
	cmd.Flags().IntVar(&f.max, "max", 0, "stop after this many messages (0: until Ctrl-C)")
	cmd.Flags().StringVar(&f.bindingKey, "binding-key", "#", "RabbitMQ: the binding key of the temporary queue")
	return cmd
}

func printMessage(out output, m *message.Message) error {
	if out.json {
		return out.line(viewOf(m))
	}
	var b strings.Builder
	if !m.Time.IsZero() {
		b.WriteString(m.Time.UTC().Format(timeFormat) + "  ")
	}
	fmt.Fprintf(&b, "%s  %s  id=%s", m.Delivery.Topic, position(m), m.ID)
	if m.Key != "" {
		fmt.Fprintf(&b, "  key=%s", m.Key)
	}
	for _, k := range sortedKeys(m.Headers) {
		fmt.Fprintf(&b, "  %s=%s", k, printable(m.Headers[k]))
	}
	b.WriteString("  " + payloadText(m.Payload))
	_, err := fmt.Fprintln(out.w, b.String())
	return err
}

func tailKafka(ctx context.Context, b *broker, topic string, from fromSpec, io *ioStreams, show func(*message.Message) (bool, error)) error {
	if _, err := kafkaPartitions(ctx, b, topic); err != nil {
		return err
	}
	var off kgo.Offset
	switch from.kind {
	case "earliest":
		off = kgo.NewOffset().AtStart()
	case "latest":
		off = kgo.NewOffset().AtEnd()
	case "last":
		off = kgo.NewOffset().AtEnd().Relative(-from.n)
	case "time":
		off = kgo.NewOffset().AfterMilli(from.t.UnixMilli())
	}
	// No consumer group: the client reads the partitions directly and
	// commits nothing.
	cl, err := kgo.NewClient(append(b.KafkaClientOptions(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(off))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Fprintf(io.err, "ferry: tailing %s on %s from %s, in no consumer group (Ctrl-C to stop)\n", topic, b, fromName(from))
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		var stop error
		fs.EachRecord(func(r *kgo.Record) {
			if stop != nil {
				return
			}
			more, err := show(messageFromRecord(r))
			switch {
			case err != nil:
				stop = err
			case !more:
				stop = errDone
			}
		})
		if stop == errDone {
			return nil
		}
		if stop != nil {
			return stop
		}
	}
}

var errDone = errors.New("done")

func fromName(f fromSpec) string {
	switch f.kind {
	case "last":
		return fmt.Sprintf("the last %d of each partition", f.n)
	case "time":
		return f.t.UTC().Format(timeFormat)
	}
	return f.kind
}

// fetchErr returns the first error of a poll that is not the context's.
func fetchErr(fs kgo.Fetches) error {
	var first error
	fs.EachError(func(t string, p int32, err error) {
		if first == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			first = fmt.Errorf("fetch %s partition %d: %w", t, p, err)
		}
	})
	return first
}

// messageFromRecord maps a record as the kafka adapter does (see its
// package doc): ID from the ferry-id header, else topic-partition-offset;
// a repeated header keeps its last value.
func messageFromRecord(r *kgo.Record) *message.Message {
	m := &message.Message{Key: string(r.Key), Payload: r.Value, Time: r.Timestamp,
		Delivery: message.Delivery{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Attempt: 1}}
	for _, h := range r.Headers {
		if h.Key == "ferry-id" {
			m.ID = string(h.Value)
			continue
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[h.Key] = string(h.Value)
	}
	if m.ID == "" {
		m.ID = fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset)
	}
	return m
}

// dialAMQP opens a connection of the tool's own to the URL's broker.
func dialAMQP(b *broker) (*amqp091.Connection, error) {
	c, err := amqp091.DialConfig(b.AMQPURL(), amqp091.Config{Dial: amqp091.DefaultDial(openTimeout), Properties: amqp091.Table{"connection_name": "ferry cli"}})
	if err != nil {
		return nil, fmt.Errorf("cannot reach RabbitMQ at %s: %s", b, scrub(err.Error(), b))
	}
	return c, nil
}

// scrub removes the URL with its password from a client error.
func scrub(s string, b *broker) string {
	return strings.ReplaceAll(s, b.AMQPURL(), b.String())
}

// checkExchange fails with a clear error when topic has no exchange.
func checkExchange(conn *amqp091.Connection, topic string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.ExchangeDeclarePassive(topic, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		var ae *amqp091.Error
		if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
			return fmt.Errorf("topic %q not found: RabbitMQ has no exchange of that name", topic)
		}
		return fmt.Errorf("topic %q: %w", topic, err)
	}
	return nil
}

func tailAMQP(ctx context.Context, b *broker, topic, bindingKey string, io *ioStreams, show func(*message.Message) (bool, error)) error {
	conn, err := dialAMQP(b)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := checkExchange(conn, topic); err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	// A server-named, exclusive, auto-delete queue: the broker deletes it
	// when this connection ends, however tail stops.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare the temporary queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, bindingKey, topic, false, nil); err != nil {
		return fmt.Errorf("bind the temporary queue to %q: %w", topic, err)
	}
	ds, err := ch.ConsumeWithContext(ctx, q.Name, "ferry-tail", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume the temporary queue: %w", err)
	}
	fmt.Fprintf(io.err, "ferry: tailing %s on %s through temporary queue %s (Ctrl-C to stop)\n", topic, b, q.Name)
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-closed:
			if e != nil {
				return fmt.Errorf("connection to %s lost: %s", b, e.Reason)
			}
			return fmt.Errorf("connection to %s closed", b)
		case d, ok := <-ds:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("the broker cancelled the temporary queue's consumer")
			}
			more, err := show(amqp.MessageFromDelivery(topic, "", &d))
			if err != nil {
				return err
			}
			if !more {
				return nil
			}
		}
	}
}
