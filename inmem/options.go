package inmem

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Defaults of the options. DefaultGroup is the adapter kit's
// (adapter.DefaultSubscriberConfig has the other Subscriber defaults), the
// same on every adapter.
const (
	// DefaultPartitions is the number of partitions of each topic unless
	// WithPartitions says otherwise.
	DefaultPartitions = 8
	// DefaultGroup is the group of a Subscriber unless WithGroup says
	// otherwise.
	DefaultGroup = adapter.DefaultGroup
)

// maxPartitions bounds WithPartitions: every topic allocates its
// partitions, and every group its state per partition, up front.
const maxPartitions = 1 << 16

// BrokerOption configures a Broker: NewBroker takes only BrokerOptions,
// so a Subscriber option given to it is a compile error. A nil
// BrokerOption is skipped.
type BrokerOption interface {
	applyBroker(*Broker) error
}

// SubscriberOption configures a Subscriber: NewSubscriber takes only
// SubscriberOptions, so a Broker option given to it is a compile error. A
// nil SubscriberOption is skipped.
type SubscriberOption interface {
	applySubscriber(*subConfig) error
}

// brokerOpt and subOpt implement the option interfaces. Their methods skip
// a nil function, so a typed nil inside an option interface is skipped
// like a nil interface.
type (
	brokerOpt func(*Broker) error
	subOpt    func(*subConfig) error
)

func (o brokerOpt) applyBroker(b *Broker) error {
	if o == nil {
		return nil
	}
	return o(b)
}

func (o subOpt) applySubscriber(c *subConfig) error {
	if o == nil {
		return nil
	}
	return o(c)
}

// invalid returns an error wrapping message.ErrInvalidConfig; format
// starts with the option as it was called, e.g. "WithPartitions(0)".
func invalid(format string, args ...any) error {
	return fmt.Errorf("inmem: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// WithPartitions sets the number of partitions per topic, 1 to 65536.
// Members of a group split the partitions; a key always maps to the same
// partition. Default: DefaultPartitions (8).
func WithPartitions(n int) BrokerOption {
	return brokerOpt(func(b *Broker) error {
		if n < 1 || n > maxPartitions {
			return invalid("WithPartitions(%d): want 1..%d", n, maxPartitions)
		}
		b.partitions = n
		return nil
	})
}

// WithRetention keeps history for groups that join later: the last count
// messages of each partition, and every message younger than age, are kept
// even after every existing group settled them. Age is measured from each
// message's Time (its publish time unless the publisher set one), as
// Kafka's time retention uses record timestamps. Neither may be negative;
// zero keeps nothing extra. Messages a group has not settled are never
// dropped. Default: 0, 0: a message is dropped once every existing group
// has settled it.
func WithRetention(count int, age time.Duration) BrokerOption {
	return brokerOpt(func(b *Broker) error {
		if count < 0 || age < 0 {
			return invalid("WithRetention(%d, %v): want count >= 0 and age >= 0", count, age)
		}
		b.retainCount = count
		b.retainAge = age
		return nil
	})
}

type subConfig struct {
	adapter.SubscriberConfig
	haveMaxPending bool // set by WithMaxPending, checked against Concurrency
	logger         *slog.Logger
	observers      []message.Observer // WithObserver (observe.go)
	obs            message.Observer   // observers and LogEvents(logger); nil without any
}

func newSubConfig(opts []SubscriberOption) (subConfig, error) {
	c := subConfig{SubscriberConfig: adapter.DefaultSubscriberConfig()}
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
		return c, fmt.Errorf("inmem: %w", err)
	}
	c.obs = c.observer()
	return c, nil
}

// WithGroup sets the consumer group, not empty. Subscribers of one group
// share a topic's messages; each group receives every message. Default:
// DefaultGroup ("default").
func WithGroup(name string) SubscriberOption {
	return subOpt(func(c *subConfig) error {
		if name == "" {
			return invalid("WithGroup(%q): the group name is empty", name)
		}
		c.Group = name
		return nil
	})
}

// WithConcurrency sets how many handlers run at once, at least 1.
// Messages with the same key never run concurrently. Default: 1.
func WithConcurrency(n int) SubscriberOption {
	return subOpt(func(c *subConfig) error {
		if n < 1 {
			return invalid("WithConcurrency(%d): want at least 1", n)
		}
		c.Concurrency = n
		return nil
	})
}

// WithRedeliveryBackoff sets the backoff before a message whose handler
// failed is delivered again: initial after the first failure, doubling up
// to max; 0 < initial <= max. Default: 100ms, 10s.
func WithRedeliveryBackoff(initial, max time.Duration) SubscriberOption {
	return subOpt(func(c *subConfig) error {
		if initial <= 0 || max < initial {
			return invalid("WithRedeliveryBackoff(%v, %v): want 0 < initial <= max", initial, max)
		}
		c.InitialBackoff, c.MaxBackoff = initial, max
		return nil
	})
}

// WithDrainTimeout sets how long in-flight handlers may run before their
// context is cancelled when the subscriber stops, or when a partition is
// taken from it in a rebalance (then only the handlers of that
// partition); it must be positive. Either way the handlers' partitions
// stay with the subscriber until the handlers have returned. Default: 30s.
func WithDrainTimeout(d time.Duration) SubscriberOption {
	return subOpt(func(c *subConfig) error {
		if d <= 0 {
			return invalid("WithDrainTimeout(%v): want > 0", d)
		}
		c.DrainTimeout = d
		return nil
	})
}

// WithMaxPending bounds the messages fetched and not yet settled per
// Subscribe call: at least 1, and not less than WithConcurrency. Default:
// 4096 (and at least the concurrency).
func WithMaxPending(n int) SubscriberOption {
	return subOpt(func(c *subConfig) error {
		if n < 1 {
			return invalid("WithMaxPending(%d): want at least 1", n)
		}
		c.MaxPending, c.haveMaxPending = n, true
		return nil
	})
}

// WithLogger sets the adapter's operational log: ferry's events in the one
// format of message.LogEvents, the same on every adapter; here each
// handler error at Debug before the message is redelivered (the in-memory
// broker has no connections or commits to report). It means the same as
// kafka.WithLogger and amqp.WithLogger. For handler errors at another
// level use WithObserver(message.LogEvents(l,
// message.LogHandlerErrorsAt(level))). Default: nil, no logging.
func WithLogger(l *slog.Logger) SubscriberOption {
	return subOpt(func(c *subConfig) error {
		c.logger = l
		return nil
	})
}
