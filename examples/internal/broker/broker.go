package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/connect"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// Forms lists the URL forms Open accepts.
const Forms = "inmem:// (the default), kafka://host:port[,host:port...] or amqp://user:pass@host:port/vhost, with connect's query parameters"

// Usage describes the -broker flag.
const Usage = "broker URL: " + Forms

// Flag registers the -broker flag on the default flag set.
func Flag() *string { return flag.String("broker", "inmem://", Usage) }

// ErrUnknownScheme is returned by Open for a URL it cannot map to an adapter.
var ErrUnknownScheme = connect.ErrUnknownScheme

// Subscriber settings used by every example, chosen for quick demos: a
// failed message is redelivered after 20 ms (doubling up to 1 s), and a
// graceful shutdown waits up to 10 s for running handlers.
const (
	redeliveryInitial = 20 * time.Millisecond
	redeliveryMax     = time.Second
	drainTimeout      = 10 * time.Second
	connectTimeout    = 10 * time.Second
	queueExpiry       = 60_000 // ms: x-expires of the run's AMQP queues
)

// Broker is an opened -broker URL.
type Broker struct {
	// Kind is "inmem", "kafka" or "amqp".
	Kind string
	// URL is the URL as given, with any password replaced by "xxxxx".
	URL string

	runID string
	conn  *connect.Broker

	mu     sync.Mutex
	topics []string // topics named by Topic, deleted by Close on Kafka
}

// Open connects to the broker named by rawURL (connect.Open) and checks
// that it is reachable, waiting at most 10 s or until ctx ends. The error
// names the URL with its password redacted.
func Open(ctx context.Context, rawURL string) (*Broker, error) {
	if rawURL == "" {
		rawURL = "inmem://"
	}
	octx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := connect.Open(octx, rawURL,
		// Retention keeps the history for groups that subscribe after the
		// first messages were published, as Kafka's log does.
		connect.WithInmem(inmem.WithRetention(1<<20, 0)),
		connect.WithAMQP(amqp.WithQueueArgs(amqp091.Table{"x-expires": int32(queueExpiry)})),
		connect.WithInmemSubscriber(inmem.WithRedeliveryBackoff(redeliveryInitial, redeliveryMax), inmem.WithDrainTimeout(drainTimeout)),
		connect.WithKafkaSubscriber(kafka.WithRedeliveryBackoff(redeliveryInitial, redeliveryMax), kafka.WithDrainTimeout(drainTimeout),
			kafka.WithCommitInterval(200*time.Millisecond)),
		connect.WithAMQPSubscriber(amqp.WithRedeliveryBackoff(redeliveryInitial, redeliveryMax), amqp.WithDrainTimeout(drainTimeout)),
	)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err() // interrupted
		}
		return nil, err
	}
	kind := conn.Scheme()
	if kind == connect.SchemeAMQPS {
		kind = connect.SchemeAMQP
	}
	return &Broker{Kind: kind, URL: conn.String(), runID: newRunID(), conn: conn}, nil
}

// Publisher returns the broker's publisher. Close closes it.
func (b *Broker) Publisher() message.Publisher { return b.conn.Publisher() }

// Subscriber returns a subscriber in group running up to concurrency
// handlers at once. Close closes it.
func (b *Broker) Subscriber(group string, concurrency int) (message.Subscriber, error) {
	sub, err := b.conn.NewSubscriber(connect.WithGroup(group), connect.WithConcurrency(concurrency))
	if err != nil {
		return nil, fmt.Errorf("broker: subscriber for group %q on %s: %w", group, b.URL, err)
	}
	return sub, nil
}

// SubscriberWith is Subscriber with more options on top, such as
// connect.WithKafkaSubscriber(kafka.WithShareGroup(group)) for a
// broker-specific mode. Close closes it.
func (b *Broker) SubscriberWith(group string, concurrency int, opts ...connect.SubscriberOption) (message.Subscriber, error) {
	all := append([]connect.SubscriberOption{connect.WithGroup(group), connect.WithConcurrency(concurrency)}, opts...)
	sub, err := b.conn.NewSubscriber(all...)
	if err != nil {
		return nil, fmt.Errorf("broker: subscriber for group %q on %s: %w", group, b.URL, err)
	}
	return sub, nil
}

// Topic returns the name to use for topic in this run: topic itself on
// inmem, topic + "-r" + run ID on real brokers (see the package doc).
func (b *Broker) Topic(topic string) string {
	if b.Kind != "inmem" {
		topic += "-r" + b.runID
	}
	b.mu.Lock()
	b.topics = append(b.topics, topic)
	b.mu.Unlock()
	return topic
}

// Prepare makes topic ready to receive messages that groups will read, even
// if their subscribers have not started yet (connect.Broker.Declare): on
// RabbitMQ it declares the topic's exchange and each group's queue bound
// to it. Kafka keeps messages for groups that join later, and so does
// inmem with the retention Open sets, so there it does nothing.
func (b *Broker) Prepare(ctx context.Context, topic string, groups ...string) error {
	return b.conn.Declare(ctx, topic, groups...)
}

// Close closes the subscribers made by Subscriber and the publisher, and
// deletes the run's Kafka topics (best effort).
func (b *Broker) Close() error {
	b.mu.Lock()
	topics := b.topics
	b.mu.Unlock()
	if cl := b.conn.KafkaClient(); cl != nil && len(topics) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var all []string
		for _, t := range topics {
			all = append(all, t, t+".DLT")
		}
		adm := kadm.NewClient(cl)
		// And the delay tiers' topics (<topic>-retry-<ms>, retry.WithDelayedRetry).
		if listed, err := adm.ListTopics(ctx); err == nil {
			for _, name := range listed.Names() {
				for _, t := range topics {
					if strings.HasPrefix(name, t+"-retry-") {
						all = append(all, name)
					}
				}
			}
		}
		_, _ = adm.DeleteTopics(ctx, all...)
		cancel()
	}
	return b.conn.Close()
}

// Redact returns rawURL with its password, if any, replaced by "xxxxx".
func Redact(rawURL string) string { return connect.Redact(rawURL) }

func newRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Main is the main function of a focused example: it parses -broker and
// -timeout, stops on SIGINT or SIGTERM, and runs run with a context that
// ends at the timeout or the signal. An interrupted run ("name:
// interrupted; stopped after a graceful drain") exits 0; any other error is
// printed and exits 1.
func Main(name string, run func(ctx context.Context, brokerURL string) error) {
	brokerURL := Flag()
	timeout := flag.Duration("timeout", time.Minute, "exit 1 if not done by then")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *brokerURL); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Println(name + ": interrupted; stopped after a graceful drain")
			return
		}
		fmt.Fprintln(os.Stderr, name+":", err)
		cancel()
		stop()
		os.Exit(1)
	}
}
