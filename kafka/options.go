package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// Option configures a Publisher or a Subscriber. Both constructors take the
// same Option type; an option that only concerns one side (the group, the
// concurrency) is accepted and ignored by the other, so one option list can
// configure both. Each option's doc says where it applies and its default.
type Option func(*config)

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

// Defaults of the options.
const (
	DefaultGroup             = "default"
	DefaultPartitions        = 8
	DefaultReplicationFactor = -1 // the broker's default.replication.factor
	DefaultCommitInterval    = time.Second
)

type config struct {
	errs       []error
	clientOpts []kgo.Opt

	// Topics.
	createTopics bool
	partitions   int32
	replication  int16

	// Subscriber.
	group          string
	concurrency    int
	maxPending     int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	drainTimeout   time.Duration
	start          StartOffset
	commitInterval time.Duration
	onError        func(*message.Message, error)
}

func newConfig(opts []Option) (config, error) {
	c := config{
		createTopics:   true,
		partitions:     DefaultPartitions,
		replication:    DefaultReplicationFactor,
		group:          DefaultGroup,
		concurrency:    dispatch.DefaultConcurrency,
		maxPending:     dispatch.DefaultMaxPending,
		initialBackoff: dispatch.DefaultInitialBackoff,
		maxBackoff:     dispatch.DefaultMaxBackoff,
		drainTimeout:   dispatch.DefaultDrainTimeout,
		start:          StartEarliest,
		commitInterval: DefaultCommitInterval,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.maxBackoff < c.initialBackoff {
		c.errf("redelivery backoff max %v is less than initial %v", c.maxBackoff, c.initialBackoff)
	}
	if len(c.errs) > 0 {
		return c, fmt.Errorf("kafka: %w: %w", message.ErrInvalidConfig, errors.Join(c.errs...))
	}
	return c, nil
}

func (c *config) errf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// WithClientOptions passes franz-go client options through, for TLS, SASL,
// client ID, tuning and anything else ferry does not wrap. They are applied
// after ferry's own settings, so they can override them (for example
// kgo.ProducerLinger, kgo.MaxBufferedRecords or kgo.FetchMaxBytes). Do not
// pass options that change what ferry relies on: consumer group, consumed
// topics, commit mode or the partition callbacks of a Subscriber. Publisher
// and Subscriber. Default: none.
func WithClientOptions(opts ...kgo.Opt) Option {
	return func(c *config) { c.clientOpts = append(c.clientOpts, opts...) }
}

// WithTopicCreation sets the partition count and replication factor of the
// topics ferry creates when a Publish or Subscribe names a topic that does
// not exist. A replication factor of -1 uses the broker's
// default.replication.factor. Publisher and Subscriber. Default: 8
// partitions, replication -1.
func WithTopicCreation(partitions int32, replicationFactor int16) Option {
	return func(c *config) {
		if partitions < 1 {
			c.errf("topic partitions %d: must be at least 1", partitions)
		}
		if replicationFactor == 0 || replicationFactor < -1 {
			c.errf("topic replication factor %d: must be at least 1, or -1 for the broker default", replicationFactor)
		}
		c.createTopics = true
		c.partitions = partitions
		c.replication = replicationFactor
	}
}

// WithoutTopicCreation makes Publish and Subscribe fail with an error
// matching message.ErrTopicNotFound when the topic does not exist, instead
// of creating it. Use it where topics are managed by other means. Publisher
// and Subscriber. Default: topics are created.
func WithoutTopicCreation() Option {
	return func(c *config) { c.createTopics = false }
}

// WithGroup sets the consumer group. Subscribers in the same group share a
// topic's partitions; each group receives every message. Subscriber only.
// Default: "default".
func WithGroup(name string) Option {
	return func(c *config) {
		if name == "" {
			c.errf("group name is empty")
		}
		c.group = name
	}
}

// WithConcurrency sets the maximum number of handler calls running at once
// per Subscribe call. Messages with the same key never run concurrently.
// Subscriber only. Default: 1.
func WithConcurrency(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.errf("concurrency %d: must be at least 1", n)
		}
		c.concurrency = n
	}
}

// WithMaxPending bounds the records fetched and handed to the dispatcher but
// not yet settled, per Subscribe call. When it is reached ferry stops
// polling, so franz-go stops fetching once its buffer is full and memory
// stays bounded with a slow handler. Subscriber only. Default: 4096.
func WithMaxPending(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.errf("max pending %d: must be at least 1", n)
		}
		c.maxPending = n
	}
}

// WithRedeliveryBackoff sets the backoff before a message whose handler
// failed is delivered again: initial after the first failure, doubling up
// to max, with jitter. Subscriber only. Default: 100ms, 10s.
func WithRedeliveryBackoff(initial, max time.Duration) Option {
	return func(c *config) {
		if initial <= 0 || max <= 0 {
			c.errf("redelivery backoff (%v, %v): both must be positive", initial, max)
		}
		c.initialBackoff, c.maxBackoff = initial, max
	}
}

// WithDrainTimeout sets how long a graceful shutdown (ctx cancelled, Close)
// or a partition revocation waits for running handlers before giving up on
// them: on shutdown their context is then cancelled; on revocation their
// results are no longer committed. Subscriber only. Default: 30s.
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errf("drain timeout %v: must be positive", d)
		}
		c.drainTimeout = d
	}
}

// WithStartOffset sets where a group with no committed offset starts.
// Subscriber only. Default: StartEarliest.
func WithStartOffset(s StartOffset) Option {
	return func(c *config) {
		if s != StartEarliest && s != StartLatest {
			c.errf("start offset %d: want StartEarliest or StartLatest", s)
		}
		c.start = s
	}
}

// WithCommitInterval sets how often settled offsets are committed while
// consuming. Offsets are also committed when partitions are revoked and on
// shutdown, so a longer interval only means more redelivery after a crash.
// Subscriber only. Default: 1s.
func WithCommitInterval(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errf("commit interval %v: must be positive", d)
		}
		c.commitInterval = d
	}
}

// WithErrorHandler sets a function that observes every handler error (for
// logging or metrics) before the message is redelivered. It runs on the
// handler goroutine and must not block. Subscriber only. Default: none.
func WithErrorHandler(fn func(msg *message.Message, err error)) Option {
	return func(c *config) { c.onError = fn }
}
