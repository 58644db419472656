package inmem

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// DefaultHandleAttempts is how many times Handle calls a failing handler
// before it gives up, unless HandleMaxAttempts says otherwise.
const DefaultHandleAttempts = 10

// HandleOption configures Handle. A nil HandleOption is skipped.
type HandleOption interface {
	applyHandle(*handleConfig) error
}

type handleOpt func(*handleConfig) error

func (o handleOpt) applyHandle(c *handleConfig) error {
	if o == nil {
		return nil
	}
	return o(c)
}

type handleConfig struct {
	group       string
	partitions  int
	maxAttempts int
}

// HandleGroup sets the group Handle delivers in (Delivery.Group), not
// empty. Default: DefaultGroup ("default").
func HandleGroup(name string) HandleOption {
	return handleOpt(func(c *handleConfig) error {
		if name == "" {
			return invalid("HandleGroup(%q): the group name is empty", name)
		}
		c.group = name
		return nil
	})
}

// HandlePartitions sets the number of partitions Handle assumes, which
// picks Delivery.Partition from the message's key as a Broker made with
// WithPartitions(n) would; 1 to 65536. Default: DefaultPartitions (8).
func HandlePartitions(n int) HandleOption {
	return handleOpt(func(c *handleConfig) error {
		if n < 1 || n > maxPartitions {
			return invalid("HandlePartitions(%d): want 1..%d", n, maxPartitions)
		}
		c.partitions = n
		return nil
	})
}

// HandleMaxAttempts sets how many times Handle calls the handler while it
// fails, at least 1. Default: DefaultHandleAttempts (10).
func HandleMaxAttempts(n int) HandleOption {
	return handleOpt(func(c *handleConfig) error {
		if n < 1 {
			return invalid("HandleMaxAttempts(%d): want at least 1", n)
		}
		c.maxAttempts = n
		return nil
	})
}

// Outcome is what Handle observed.
type Outcome struct {
	// Attempts is how many times the handler was called.
	Attempts int
	// Errors holds each failed attempt's error, in order (a panic as a
	// *message.PanicError). A settled message has len(Errors) ==
	// Attempts-1.
	Errors []error
	// Delays holds, for each failed attempt, the redelivery delay the
	// handler asked for with message.RedeliverAfter (the retry
	// middleware's backoff), 0 where it asked for none. Handle does not
	// wait for them; a Subscriber would.
	Delays []time.Duration
	// Settled reports that the last attempt returned nil: a subscriber
	// would have settled (acknowledged, committed) the message.
	Settled bool
}

// Handle runs the handler chain h on one message the way a Subscriber of
// topic would deliver it, without a broker: for the smallest unit tests of
// a handler and its middleware (retry, dedupe). It copies msg, fills in
// ID and Time where empty as Publish does, and calls h with the Delivery
// fields a Subscriber sets (System, Topic, Group, Partition from the key, Offset
// 0, Attempt 1). A panic is recovered into a failed attempt, as in a
// subscriber. While h fails, Handle delivers the same message again with
// Attempt + 1, at once: redelivery backoffs are not waited for, so a test
// of three attempts takes no time (the retry middleware's own backoff,
// which a subscriber honours, is skipped too). It stops when h returns
// nil, after HandleMaxAttempts attempts, or when ctx ends.
//
// The error is nil when the message was settled. Otherwise it says why:
// the last attempt's error after the attempts ran out (wrapped: errors.Is
// and errors.As see it), ctx's error, or bad input (a nil ctx, handler or
// message, an invalid topic, a bad option), in which case h was not
// called. The Outcome has the attempts either way.
func Handle(ctx context.Context, h message.Handler, topic string, msg *message.Message, opts ...HandleOption) (Outcome, error) {
	if ctx == nil {
		return Outcome{}, fmt.Errorf("inmem: handle: %w: nil context", message.ErrInvalidConfig)
	}
	if h == nil {
		return Outcome{}, fmt.Errorf("inmem: handle %q: %w", topic, message.ErrNilHandler)
	}
	if err := adapter.ValidateLogTopic(topic); err != nil {
		return Outcome{}, fmt.Errorf("inmem: handle: %w", err)
	}
	c := handleConfig{group: DefaultGroup, partitions: DefaultPartitions, maxAttempts: DefaultHandleAttempts}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyHandle(&c); err != nil {
			return Outcome{}, err
		}
	}
	if msg == nil {
		return Outcome{}, fmt.Errorf("inmem: handle %q: %w: nil message", topic, message.ErrInvalidMessage)
	}
	m := &message.Message{ID: msg.ID, Key: msg.Key, Payload: msg.Payload, Headers: msg.Headers, Time: msg.Time}
	if err := adapter.Prepare(topic, []*message.Message{m}); err != nil {
		return Outcome{}, fmt.Errorf("inmem: handle %q: %w", topic, err)
	}
	part := 0
	if m.Key != "" {
		part = keyPartition(m.Key, c.partitions)
	}
	var out Outcome
	for out.Attempts < c.maxAttempts {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("inmem: handle %q: %w", topic, err)
		}
		out.Attempts++
		m.Delivery = message.Delivery{System: System, Topic: topic, Group: c.group, Attempt: out.Attempts, Partition: int32(part)}
		err := adapter.Call(ctx, h, m)
		if err == nil {
			out.Settled = true
			return out, nil
		}
		out.Errors = append(out.Errors, err)
		d, _ := message.RedeliveryDelay(err)
		out.Delays = append(out.Delays, d)
	}
	return out, fmt.Errorf("inmem: handle %q: not settled after %d attempts: %w", topic, out.Attempts, out.Errors[len(out.Errors)-1])
}
