package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// Forms lists the URL forms Open accepts.
const Forms = "inmem:// (the default), kafka://host:port[,host:port...] or amqp://user:pass@host:port/vhost"

// Usage describes the -broker flag.
const Usage = "broker URL: " + Forms

// Flag registers the -broker flag on the default flag set.
func Flag() *string { return flag.String("broker", "inmem://", Usage) }

// ErrUnknownScheme is returned by Open for a URL it cannot map to an adapter.
var ErrUnknownScheme = errors.New("unknown broker scheme")

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
	pub   message.Publisher

	mem     *inmem.Broker
	brokers []string // kafka
	amqpURL string   // amqp
	amqpPub *amqp.Publisher
	amqpOpt amqp.Option // shared by the publisher and subscribers: same queue declarations

	mu     sync.Mutex
	topics []string // topics named by Topic, deleted by Close on Kafka
	subs   []message.Subscriber
}

// Open connects to the broker named by rawURL and checks that it is
// reachable, waiting at most 10 s or until ctx ends. The error names the URL
// with its password redacted.
func Open(ctx context.Context, rawURL string) (*Broker, error) {
	if rawURL == "" {
		rawURL = "inmem://"
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("broker: %w: %q has no scheme; want %s", ErrUnknownScheme, Redact(rawURL), Forms)
	}
	b := &Broker{URL: Redact(rawURL), runID: newRunID()}
	switch strings.ToLower(scheme) {
	case "inmem", "mem":
		b.Kind = "inmem"
		// Retention keeps the history for groups that subscribe after the
		// first messages were published, as Kafka's log does.
		mem, err := inmem.NewBroker(inmem.WithRetention(1<<20, 0))
		if err != nil {
			return nil, fmt.Errorf("broker: %s: %w", b.URL, err)
		}
		pub, err := inmem.NewPublisher(mem)
		if err != nil {
			return nil, fmt.Errorf("broker: %s: %w", b.URL, err)
		}
		b.mem, b.pub = mem, pub
		return b, nil

	case "kafka":
		b.Kind = "kafka"
		for _, hp := range strings.Split(strings.TrimRight(rest, "/"), ",") {
			if hp = strings.TrimSpace(hp); hp != "" {
				b.brokers = append(b.brokers, hp)
			}
		}
		if len(b.brokers) == 0 {
			return nil, fmt.Errorf("broker: %s: no host:port after kafka://", b.URL)
		}
		pub, err := kafka.NewPublisher(b.brokers)
		if err != nil {
			return nil, fmt.Errorf("broker: %s: %w", b.URL, err)
		}
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		if err := pub.Client().Ping(pctx); err != nil {
			pub.Close()
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, ctx.Err() // interrupted
			}
			return nil, fmt.Errorf("broker: cannot reach Kafka at %s: %w", b.URL, err)
		}
		b.pub = pub
		return b, nil

	case "amqp", "amqps":
		b.Kind = "amqp"
		b.amqpURL = rawURL
		b.amqpOpt = amqp.WithQueueArgs(amqp091.Table{"x-expires": int32(queueExpiry)})
		pub, err := amqp.NewPublisher(rawURL, b.amqpOpt)
		if err != nil {
			// The adapter's errors already carry the redacted URL.
			return nil, fmt.Errorf("broker: cannot reach RabbitMQ: %w", err)
		}
		b.amqpPub, b.pub = pub, pub
		return b, nil
	}
	return nil, fmt.Errorf("broker: %w %q in %s; want %s", ErrUnknownScheme, scheme, Redact(rawURL), Forms)
}

// Publisher returns the broker's publisher. Close closes it.
func (b *Broker) Publisher() message.Publisher { return b.pub }

// Subscriber returns a subscriber in group running up to concurrency
// handlers at once. Close closes it.
func (b *Broker) Subscriber(group string, concurrency int) (message.Subscriber, error) {
	var (
		sub message.Subscriber
		err error
	)
	switch b.Kind {
	case "inmem":
		sub, err = inmem.NewSubscriber(b.mem,
			inmem.WithGroup(group),
			inmem.WithConcurrency(concurrency),
			inmem.WithRedeliveryBackoff(redeliveryInitial, redeliveryMax),
			inmem.WithDrainTimeout(drainTimeout))
	case "kafka":
		sub, err = kafka.NewSubscriber(b.brokers,
			kafka.WithGroup(group),
			kafka.WithConcurrency(concurrency),
			kafka.WithRedeliveryBackoff(redeliveryInitial, redeliveryMax),
			kafka.WithDrainTimeout(drainTimeout),
			kafka.WithCommitInterval(200*time.Millisecond))
	case "amqp":
		sub, err = amqp.NewSubscriber(b.amqpURL,
			amqp.WithGroup(group),
			amqp.WithConcurrency(concurrency),
			amqp.WithRedeliveryBackoff(redeliveryInitial, redeliveryMax),
			amqp.WithDrainTimeout(drainTimeout),
			b.amqpOpt)
	}
	if err != nil {
		return nil, fmt.Errorf("broker: subscriber for group %q on %s: %w", group, b.URL, err)
	}
	b.mu.Lock()
	b.subs = append(b.subs, sub)
	b.mu.Unlock()
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
// if their subscribers have not started yet. On RabbitMQ it declares the
// topic's exchange and each group's queue bound to it (a message published
// while no queue is bound is unroutable). Kafka creates missing topics on
// first use and keeps messages for groups that join later (they start at
// the earliest offset), and so does inmem with the retention Open sets, so
// there it does nothing.
func (b *Broker) Prepare(ctx context.Context, topic string, groups ...string) error {
	if b.Kind != "amqp" {
		return nil
	}
	if err := b.amqpPub.Declare(ctx, topic, groups...); err != nil {
		return fmt.Errorf("broker: declare %q for groups %q on %s: %w", topic, groups, b.URL, err)
	}
	return nil
}

// Close closes the subscribers made by Subscriber and the publisher, and
// deletes the run's Kafka topics (best effort).
func (b *Broker) Close() error {
	b.mu.Lock()
	subs := b.subs
	topics := b.topics
	b.subs = nil
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if kp, ok := b.pub.(*kafka.Publisher); ok && len(topics) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var all []string
		for _, t := range topics {
			all = append(all, t, t+".DLT")
		}
		_, _ = kadm.NewClient(kp.Client()).DeleteTopics(ctx, all...)
		cancel()
	}
	if err := b.pub.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
		errs = append(errs, err)
	}
	if b.mem != nil {
		errs = append(errs, b.mem.Close())
	}
	return errors.Join(errs...)
}

// Redact returns rawURL with its password, if any, replaced by "xxxxx".
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(rawURL, "@") {
			return "(unparsable URL with credentials)"
		}
		return rawURL
	}
	return u.Redacted()
}

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
