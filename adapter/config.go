package adapter

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// Defaults of SubscriberConfig: the same on every ferry adapter, so that
// a service moved from one broker to another keeps its behaviour.
const (
	// DefaultGroup is the consumer group of a subscriber that names none.
	DefaultGroup = "default"
	// DefaultConcurrency is the number of handlers run at once: one.
	DefaultConcurrency = 1
	// DefaultMaxPending bounds the messages fetched and not yet settled
	// per Subscribe call.
	DefaultMaxPending = 4096
	// DefaultInitialBackoff is the wait before the first redelivery of a
	// message whose handler failed.
	DefaultInitialBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the redelivery backoff, which doubles after
	// each further failure.
	DefaultMaxBackoff = 10 * time.Second
	// DefaultDrainTimeout is how long in-flight handlers may run on
	// shutdown (or when their partition is revoked) before their context
	// is cancelled.
	DefaultDrainTimeout = 30 * time.Second
)

// SubscriberConfig is the subscriber configuration every adapter shares:
// the group, the concurrency, the bound on pending messages, the
// redelivery backoff and the drain timeout, with one set of defaults and
// one validation.
//
// For adapter authors (and ferry's option functions): embed it in the
// adapter's option struct, start from DefaultSubscriberConfig, let the
// options (WithGroup, WithConcurrency, WithMaxPending,
// WithRedeliveryBackoff, WithDrainTimeout) set the fields as given, and
// call Validate in the constructor, wrapping its error with the adapter's
// prefix. dispatch.ConfigFor turns it into the dispatcher's
// configuration. An adapter that derives a value itself (amqp sizes
// MaxPending from its prefetch) documents that on its option.
type SubscriberConfig struct {
	// Group is the consumer group: subscribers of one group share a
	// topic's messages, each group receives every message. Default
	// DefaultGroup. It must not be empty.
	Group string
	// Concurrency is the most handlers running at once. Default
	// DefaultConcurrency (1). At least 1.
	Concurrency int
	// MaxPending bounds the messages fetched and not yet settled per
	// Subscribe call: the adapter's backpressure. Default
	// DefaultMaxPending (4096). At least 1; the dispatcher raises it to
	// Concurrency when it is lower.
	MaxPending int
	// InitialBackoff is the wait before a failed message is delivered
	// again; it doubles after each further failure of the message, up to
	// MaxBackoff, each wait with ±50% jitter (NewBackoff). A handler error
	// made with message.RedeliverAfter sets the wait itself. Defaults
	// DefaultInitialBackoff (100ms) and DefaultMaxBackoff (10s);
	// 0 < InitialBackoff <= MaxBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the redelivery backoff; see InitialBackoff.
	MaxBackoff time.Duration
	// DrainTimeout is how long in-flight handlers may run, with their
	// context intact, when the Subscribe call stops or their partition is
	// revoked, before their context is cancelled. Default
	// DefaultDrainTimeout (30s). Positive.
	DrainTimeout time.Duration
}

// DefaultSubscriberConfig returns the configuration with every default set.
func DefaultSubscriberConfig() SubscriberConfig {
	return SubscriberConfig{
		Group:          DefaultGroup,
		Concurrency:    DefaultConcurrency,
		MaxPending:     DefaultMaxPending,
		InitialBackoff: DefaultInitialBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		DrainTimeout:   DefaultDrainTimeout,
	}
}

// Fill sets the zero fields to their defaults, for a configuration written
// as a literal where a zero value means "not set". It leaves other values,
// valid or not, to Validate. A MaxBackoff left zero becomes
// DefaultMaxBackoff, or InitialBackoff when that is larger.
func (c *SubscriberConfig) Fill() {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.InitialBackoff)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
}

// Validate reports every value out of range, joined in one error that
// wraps message.ErrInvalidConfig; nil when the configuration is valid.
// Zero values are errors here: call Fill first where zero means the
// default.
func (c SubscriberConfig) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("group name is empty"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d, want at least 1", c.Concurrency))
	}
	if c.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("max pending %d, want at least 1", c.MaxPending))
	}
	if c.InitialBackoff <= 0 || c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("redelivery backoff initial %v, max %v: want 0 < initial <= max", c.InitialBackoff, c.MaxBackoff))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("drain timeout %v, want > 0", c.DrainTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", message.ErrInvalidConfig, errors.Join(errs...))
}
