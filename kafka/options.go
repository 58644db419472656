package kafka

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// PublisherOption configures a Publisher. NewPublisher takes only
// PublisherOptions, so a Subscriber option (WithGroup, WithConcurrency,
// ...) given to it is a compile error instead of a silent no-op. Every
// Option is a PublisherOption. A nil PublisherOption is skipped.
type PublisherOption interface {
	applyPublisher(*config) error
}

// SubscriberOption configures a Subscriber. NewSubscriber takes only
// SubscriberOptions. Every Option is a SubscriberOption. A nil
// SubscriberOption is skipped.
type SubscriberOption interface {
	applySubscriber(*config) error
}

// Option configures both sides: NewPublisher and NewSubscriber take it, and
// it means the same to both (the franz-go client options, topic creation,
// the logger). WithOptions bundles several into one, for a list that both
// constructors share.
type Option interface {
	PublisherOption
	SubscriberOption
}

// sharedOpt is an Option, subOpt a SubscriberOption only. Their methods
// skip a nil function, so a typed nil inside an option interface is
// skipped like a nil interface.
type (
	sharedOpt func(*config) error
	subOpt    func(*config) error
	pubOpt    func(*config) error
)

func (o pubOpt) applyPublisher(c *config) error     { return applyOpt(o, c) }
func (o sharedOpt) applyPublisher(c *config) error  { return applyOpt(o, c) }
func (o sharedOpt) applySubscriber(c *config) error { return applyOpt(o, c) }
func (o subOpt) applySubscriber(c *config) error    { return applyOpt(o, c) }

func applyOpt[F ~func(*config) error](f F, c *config) error {
	if f == nil {
		return nil
	}
	return f(c)
}

// StartOffset says where a consumer group with no committed offset starts
// reading a partition.
type StartOffset int

const (
	// StartEarliest starts at the earliest retained record (the default).
	StartEarliest StartOffset = iota
	// StartLatest starts after the last record, so only records published
	// after the group first joins are delivered.
	StartLatest
)

// Defaults of the options. The Subscriber's group, concurrency, max
// pending, redelivery backoff and drain timeout defaults are the adapter
// kit's (adapter.DefaultSubscriberConfig), the same on every adapter.
const (
	DefaultGroup             = adapter.DefaultGroup
	DefaultPartitions        = 8
	DefaultReplicationFactor = -1 // the broker's default.replication.factor
	DefaultCommitInterval    = time.Second
	DefaultDeliveryTimeout   = 30 * time.Second
)

type config struct {
	clientOpts []kgo.Opt
	logger     *slog.Logger

	// Topics.
	createTopics   bool
	partitions     int32
	replication    int16
	havePartitions bool // set by WithTopicCreation: an existing topic must match

	// Publisher.
	deliveryTimeout time.Duration

	// Subscriber: group, concurrency, max pending, redelivery backoff,
	// drain timeout, and what only Kafka has.
	adapter.SubscriberConfig
	haveMaxPending bool // set by WithMaxPending, checked against Concurrency
	start          StartOffset
	commitInterval time.Duration
	share          bool // WithShareGroup: Group is a share group (share.go)

	// Events (observe.go): the WithObserver observers, and all of them
	// with the logger's message.LogEvents once the options are applied;
	// nil without any.
	observers []message.Observer
	obs       message.Observer
}

func defaultConfig() config {
	return config{
		createTopics:     true,
		partitions:       DefaultPartitions,
		replication:      DefaultReplicationFactor,
		SubscriberConfig: adapter.DefaultSubscriberConfig(),
		start:            StartEarliest,
		commitInterval:   DefaultCommitInterval,
		deliveryTimeout:  DefaultDeliveryTimeout,
	}
}

func newPublisherConfig(opts []PublisherOption) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyPublisher(&c); err != nil {
			return c, err
		}
	}
	return c, c.finish()
}

func newSubscriberConfig(opts []SubscriberOption) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applySubscriber(&c); err != nil {
			return c, err
		}
	}
	if c.haveMaxPending && c.MaxPending < c.Concurrency {
		return c, invalid("WithMaxPending(%d) is less than WithConcurrency(%d): at most %d handlers could run at once", c.MaxPending, c.Concurrency, c.MaxPending)
	}
	if err := c.SubscriberConfig.Validate(); err != nil {
		return c, fmt.Errorf("kafka: %w", err)
	}
	return c, c.finish()
}

// finish derives what the options imply once all are applied: the
// logger's bridge for franz-go goes before the client options, so that a
// kgo.WithLogger given with WithClientOptions overrides it.
func (c *config) finish() error {
	c.obs = message.Observers(append(c.observers, message.LogEvents(c.logger))...)
	if c.logger == nil {
		return nil
	}
	c.clientOpts = append([]kgo.Opt{kgo.WithLogger(newKgoLogger(c.logger))}, c.clientOpts...)
	return nil
}

// validateBrokers checks the seed broker addresses of NewPublisher and
// NewSubscriber: at least one, each "host:port" with a non-empty host
// without spaces and a port from 1 to 65535 ("[::1]:9092" for IPv6). An
// empty entry, what strings.Split of an unset variable gives, is an error
// instead of franz-go's silent default of 127.0.0.1:9092.
func validateBrokers(brokers []string) error {
	if len(brokers) == 0 {
		return invalid("no seed brokers")
	}
	for i, b := range brokers {
		why := ""
		host, port, err := net.SplitHostPort(b)
		switch {
		case strings.TrimSpace(b) == "":
			why = "it is empty (an unset variable split on commas gives one empty address)"
		case strings.ContainsAny(b, " \t\r\n"):
			why = "it contains white space"
		case err != nil:
			why = "want host:port: " + err.Error()
		case host == "":
			why = "the host is empty"
		default:
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				why = fmt.Sprintf("port %q is not a number from 1 to 65535", port)
			}
		}
		if why != "" {
			return invalid("seed broker #%d %q of %d: %s", i, b, len(brokers), why)
		}
	}
	return nil
}

// invalid returns an error wrapping message.ErrInvalidConfig; format
// starts with the option as it was called, e.g. "WithConcurrency(0)".
func invalid(format string, args ...any) error {
	return fmt.Errorf("kafka: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// WithOptions bundles options into one, so that one list can configure
// both sides: a []Option does not convert to []PublisherOption or
// []SubscriberOption, but WithOptions(list...) is both. Nil entries are
// skipped. Default: none.
func WithOptions(opts ...Option) Option {
	opts = append([]Option(nil), opts...)
	return sharedOpt(func(c *config) error {
		for _, o := range opts {
			if o == nil {
				continue
			}
			if err := o.applyPublisher(c); err != nil { // the same as applySubscriber for an Option
				return err
			}
		}
		return nil
	})
}

// WithClientOptions passes franz-go client options through, for TLS, SASL,
// client ID, tuning and anything else ferry does not wrap. They are applied
// after ferry's own settings, so they can override them (for example
// kgo.ProducerLinger, kgo.MaxBufferedRecords, kgo.FetchMaxBytes or
// kgo.WithLogger). Do not pass options that change what ferry relies on:
// consumer group, consumed topics, commit mode or the partition callbacks
// of a Subscriber. Nil entries are skipped; an option franz-go rejects
// makes the constructor fail with message.ErrInvalidConfig. Publisher and
// Subscriber; repeated calls add up. Default: none.
func WithClientOptions(opts ...kgo.Opt) Option {
	var keep []kgo.Opt
	for _, o := range opts {
		if o != nil {
			keep = append(keep, o)
		}
	}
	return sharedOpt(func(c *config) error {
		c.clientOpts = append(c.clientOpts, keep...)
		return nil
	})
}

// WithLogger sets the adapter's operational log: franz-go's own log
// (connections, metadata, group joins and rebalances, failed requests and
// commits) at the levels the logger has enabled, each record with the
// attribute client=franz-go, and ferry's events in the one format of
// message.LogEvents, the same on every adapter: on a Subscriber each
// handler error at Debug before the record is redelivered, each failed
// commit at Warn; on a Publisher each failed Publish at Debug. It means
// the same as amqp.WithLogger and inmem.WithLogger. For handler errors at
// another level use WithObserver(message.LogEvents(l,
// message.LogHandlerErrorsAt(level))). Publisher and Subscriber. Default:
// nil, no logging.
func WithLogger(l *slog.Logger) Option {
	return sharedOpt(func(c *config) error {
		c.logger = l
		return nil
	})
}

// WithTopicCreation sets the partition count (at least 1) and replication
// factor (at least 1, or -1 for the broker's default.replication.factor)
// of the topics ferry creates when a Publish or Subscribe names a topic
// that does not exist, and turns topic creation on. Publisher and
// Subscriber. Default: DefaultPartitions (8) partitions, replication
// DefaultReplicationFactor (-1).
//
// Given explicitly, the partition count is also checked against a topic
// that already exists: another count (which maps keys to other partitions
// than intended) fails the Publish or Subscribe with an error wrapping
// message.ErrInvalidConfig that names both counts, rather than being
// accepted silently. Without WithTopicCreation an existing topic's count
// is accepted as it is.
func WithTopicCreation(partitions int32, replicationFactor int16) Option {
	return sharedOpt(func(c *config) error {
		if partitions < 1 {
			return invalid("WithTopicCreation(%d, %d): partitions must be at least 1", partitions, replicationFactor)
		}
		if replicationFactor == 0 || replicationFactor < -1 {
			return invalid("WithTopicCreation(%d, %d): replication factor must be at least 1, or -1 for the broker default", partitions, replicationFactor)
		}
		c.createTopics = true
		c.partitions = partitions
		c.replication = replicationFactor
		c.havePartitions = true
		return nil
	})
}

// WithDeliveryTimeout bounds a Publish call whose ctx has no deadline: the
// topic look-up (and creation) and the records' delivery, franz-go's
// retries included, get at most d. A broker that accepts connections and
// never answers then fails the Publish after about d with an error naming
// WithDeliveryTimeout that matches context.DeadlineExceeded, instead of
// holding it for franz-go's retry timeouts (about 40 s for the topic
// look-up) or, for records, forever. A ctx with a deadline is used as it
// is (this bound does not apply). ferry does not use
// kgo.RecordDeliveryTimeout by default because franz-go measures it from
// the record timestamp (Message.Time), which may be in the past. It must
// be positive. Publisher only. Default: DefaultDeliveryTimeout (30 s).
func WithDeliveryTimeout(d time.Duration) PublisherOption {
	return pubOpt(func(c *config) error {
		if d <= 0 {
			return invalid("WithDeliveryTimeout(%v): want > 0", d)
		}
		c.deliveryTimeout = d
		return nil
	})
}

// WithoutTopicCreation makes Publish and Subscribe fail with an error
// matching message.ErrTopicNotFound when the topic does not exist, instead
// of creating it. Use it where topics are managed by other means. Publisher
// and Subscriber. Default: topics are created (WithTopicCreation).
func WithoutTopicCreation() Option {
	return sharedOpt(func(c *config) error {
		c.createTopics = false
		return nil
	})
}

// WithGroup sets the consumer group: a non-empty UTF-8 string.
// Subscribers in the same group share a topic's partitions; each group
// receives every message. Subscriber only. Default: DefaultGroup
// ("default").
func WithGroup(name string) SubscriberOption {
	return subOpt(func(c *config) error {
		if name == "" {
			return invalid("WithGroup(%q): the group name is empty", name)
		}
		if !utf8.ValidString(name) {
			return invalid("WithGroup(%q): the group name is not valid UTF-8", name)
		}
		c.Group = name
		return nil
	})
}

// WithConcurrency sets the maximum number of handler calls running at once
// per Subscribe call, at least 1. Messages with the same key never run
// concurrently. Subscriber only. Default: 1.
func WithConcurrency(n int) SubscriberOption {
	return subOpt(func(c *config) error {
		if n < 1 {
			return invalid("WithConcurrency(%d): want at least 1", n)
		}
		c.Concurrency = n
		return nil
	})
}

// WithMaxPending bounds the records fetched and handed to the dispatcher but
// not yet settled, per Subscribe call: at least 1, and not less than
// WithConcurrency. When it is reached ferry stops polling, so franz-go
// stops fetching once its buffer is full and memory stays bounded with a
// slow handler. With WithShareGroup it is the most records a Subscribe
// call acquires in one round of polls (see the package doc, "Share
// groups"), default 16 per WithConcurrency worker and at least 32.
// Subscriber only.
// Default: 4096 (and at least the concurrency).
func WithMaxPending(n int) SubscriberOption {
	return subOpt(func(c *config) error {
		if n < 1 {
			return invalid("WithMaxPending(%d): want at least 1", n)
		}
		c.MaxPending, c.haveMaxPending = n, true
		return nil
	})
}

// WithRedeliveryBackoff sets the backoff before a message whose handler
// failed is delivered again: initial after the first failure, doubling up
// to max, with jitter; 0 < initial <= max. Subscriber only. Default: 100ms,
// 10s.
func WithRedeliveryBackoff(initial, max time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if initial <= 0 || max < initial {
			return invalid("WithRedeliveryBackoff(%v, %v): want 0 < initial <= max", initial, max)
		}
		c.InitialBackoff, c.MaxBackoff = initial, max
		return nil
	})
}

// WithDrainTimeout sets how long a graceful shutdown (ctx cancelled, Close)
// or a partition revocation lets running handlers finish with their
// context intact; then their context is cancelled (on revocation only that
// of the revoked partitions' handlers), and they are still waited for
// before the partitions are committed and let go. It must be positive.
// Subscriber only. Default: 30s.
func WithDrainTimeout(d time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if d <= 0 {
			return invalid("WithDrainTimeout(%v): want > 0", d)
		}
		c.DrainTimeout = d
		return nil
	})
}

// WithStartOffset sets where a group with no committed offset starts:
// StartEarliest or StartLatest. Subscriber only. Default: StartEarliest.
func WithStartOffset(s StartOffset) SubscriberOption {
	return subOpt(func(c *config) error {
		if s != StartEarliest && s != StartLatest {
			return invalid("WithStartOffset(%d): want StartEarliest or StartLatest", s)
		}
		c.start = s
		return nil
	})
}

// WithCommitInterval sets how often settled offsets are committed while
// consuming; it must be positive. Offsets are also committed when
// partitions are revoked and on shutdown, so a longer interval only means
// more redelivery after a crash. Subscriber only. Default:
// DefaultCommitInterval (1s).
func WithCommitInterval(d time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if d <= 0 {
			return invalid("WithCommitInterval(%v): want > 0", d)
		}
		c.commitInterval = d
		return nil
	})
}
