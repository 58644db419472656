package retry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"time"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// Headers of a message in a delayed retry tier (see WithDelayedRetry).
// They stay on the message in later tiers and on the dead-letter copy,
// where they tell its history.
const (
	// HeaderTierTopic is the message's own topic.
	HeaderTierTopic = delay.HeaderTopic
	// HeaderTierGroup is the consumer group whose handler failed.
	HeaderTierGroup = delay.HeaderGroup
	// HeaderTier is the tier the message waits in or came back from (1 for
	// the first), in decimal; msg.Delivery.Tier has it on delivery.
	HeaderTier = delay.HeaderTier
	// HeaderTierDue is the earliest time the message is handled again
	// (RFC 3339 in UTC with milliseconds, rounded up).
	HeaderTierDue = delay.HeaderDue
	// HeaderTierAttempts is the number of failed handler calls before the
	// message entered its tier, all earlier tiers included.
	HeaderTierAttempts = delay.HeaderAttempts
	// HeaderTierFirstFailure is the time of the first failed handler call,
	// on the message's own topic.
	HeaderTierFirstFailure = delay.HeaderFirstFailure
	// HeaderTierOriginalPartition and HeaderTierOriginalOffset are the
	// position in the message's own topic (absent on AMQP).
	HeaderTierOriginalPartition = delay.HeaderPartition
	HeaderTierOriginalOffset    = delay.HeaderOffset
	// HeaderTierError is the text of the error that sent the message to
	// its tier, truncated to WithMaxErrorLength.
	HeaderTierError = "ferry-retry-error"

	// HeaderSpringRetryAttempts, HeaderSpringRetryBackoffTimestamp and
	// HeaderSpringRetryOriginalTimestamp are Spring Kafka's retry-topic
	// headers, written besides ferry's with SpringHeaders: the number of
	// the next attempt as a 4-byte big-endian int, and the due time and
	// the original record's timestamp in Unix milliseconds as Java's
	// BigInteger.toByteArray.
	HeaderSpringRetryAttempts          = delay.HeaderSpringAttempts
	HeaderSpringRetryBackoffTimestamp  = delay.HeaderSpringBackoffTimestamp
	HeaderSpringRetryOriginalTimestamp = delay.HeaderSpringOriginalTimestamp
)

// TierSuffix is the infix of a tier topic's name: <topic>-retry-<delay
// in ms>, as Spring Kafka's @RetryableTopic names its retry topics.
const TierSuffix = "-retry-"

// tiers is WithDelayedRetry's configuration.
type tiers struct {
	pub    message.Publisher
	delays []time.Duration
	byIdx  bool // names by index: some delays repeat
}

// WithDelayedRetry sends a message whose in-process attempts are
// exhausted (WithMaxAttempts, WithMaxElapsedTime) out of its topic into a
// delay tier instead of the dead-letter topic: the message is published
// through pub to the tier of delays[0], the original is settled, and the
// topic goes on with the next messages. delays[0] later the message is
// handled again, by the same handler chain, with one attempt; if that
// fails it goes to the tier of delays[1], and so on; after the last tier,
// to the dead-letter topic, with its whole history (see the package doc,
// "Delayed retry"). A permanent error skips the remaining tiers.
//
// The tiers must be consumed: subscribe with Policy.Subscribe (NewPolicy),
// which consumes the topic and every tier with one call. On Kafka and
// inmem a tier is a topic named <topic>-retry-<delay in ms>
// (<topic>-retry-<index> from 0 when delays repeat), as Spring Kafka's
// @RetryableTopic names them; on RabbitMQ it is an exchange of that name
// and a wait queue per group with the delay as its TTL.
//
// A message retried this way gives up its place in its key's order:
// later messages of the key are handled while it waits. Use it for
// failures that take minutes to heal (a downstream is down), not where a
// key's order matters.
//
// pub also publishes the dead-letter copies unless WithDeadLetter names
// another publisher. delays must not be empty and each must be at least
// a millisecond. A nil pub, a typed nil included, fails New with
// message.ErrInvalidConfig. Default: no tiers.
func WithDelayedRetry(pub message.Publisher, delays ...time.Duration) Option {
	delays = append([]time.Duration(nil), delays...)
	return Option{func(c *config) error {
		if isnil.Is(pub) {
			return invalid("WithDelayedRetry: publisher is nil (%T)", pub)
		}
		if len(delays) == 0 {
			return invalid("WithDelayedRetry: no delays: give at least one tier")
		}
		t := &tiers{pub: pub, delays: delays}
		seen := map[time.Duration]bool{}
		for i, d := range delays {
			if d < time.Millisecond {
				return invalid("WithDelayedRetry: delay %d is %v; want at least 1ms", i, d)
			}
			ms := d.Truncate(time.Millisecond)
			if seen[ms] {
				t.byIdx = true
			}
			seen[ms] = true
		}
		c.delayed = t
		if c.pub == nil {
			c.pub = pub
		}
		return nil
	}}
}

// topic returns the name of tier n (1-based) of topic.
func (t *tiers) topic(topic string, n int) string {
	if t.byIdx {
		return topic + TierSuffix + strconv.Itoa(n-1)
	}
	return topic + TierSuffix + strconv.FormatInt(t.delays[n-1].Milliseconds(), 10)
}

// brokerHeaders are headers RabbitMQ adds when it dead-letters a message
// (the wait queues do): a tier copy must not carry them as strings, and
// RabbitMQ adds them afresh.
func brokerHeader(k string) bool {
	return k == "x-death" || k == "x-delivery-count" ||
		strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-")
}

// tierState is what the tier headers of a delivered message say.
type tierState struct {
	tier      int
	topic     string
	first     time.Time
	partition int32
	offset    int64
}

func (r *retrier) tierOf(msg *message.Message) (tierState, bool) {
	s := tierState{partition: -1, offset: -1}
	tier, _, ok := delay.Tier(msg.Headers)
	if !ok || delay.Foreign(msg, msg.Delivery.Group) {
		return s, false
	}
	s.tier = tier
	s.topic = msg.Headers[delay.HeaderTopic]
	if s.topic == "" {
		return s, false
	}
	// Only a delivery from the tier (Kafka, inmem) or back on the topic
	// (AMQP) is in the tier: a copy consumed from a dead-letter topic is
	// not, even by the same group.
	if d := msg.Delivery.Topic; d != s.topic && !strings.HasPrefix(d, s.topic+TierSuffix) {
		return s, false
	}
	if t, ok := delay.ParseTime(msg.Headers[delay.HeaderFirstFailure]); ok {
		s.first = t
	}
	if p, err := strconv.ParseInt(msg.Headers[delay.HeaderPartition], 10, 32); err == nil && p >= 0 {
		s.partition = int32(p)
	}
	if o, err := strconv.ParseInt(msg.Headers[delay.HeaderOffset], 10, 64); err == nil && o >= 0 {
		s.offset = o
	}
	return s, true
}

// delayedRetry is the tiers' part of deadLetter: a message whose attempts
// are exhausted goes to its next tier (done: the result is the publish's),
// or, after the last tier or for a permanent error, on to the dead-letter
// topic as the message of its own topic: the returned msg and f then
// describe it there (topic, position, first failure).
func (r *retrier) delayedRetry(ctx context.Context, msg *message.Message, f *failure) (*message.Message, *failure, bool, error) {
	t := r.delayed
	if t == nil {
		return msg, f, false, nil
	}
	st, inTier := r.tierOf(msg)
	if !inTier {
		st = tierState{topic: msg.Delivery.Topic, first: f.first, partition: msg.Delivery.Partition, offset: msg.Delivery.Offset}
	}
	if !r.permanent(f.err) && st.tier < len(t.delays) && st.topic != "" {
		return msg, f, true, r.toTier(ctx, msg, f, st)
	}
	if !inTier {
		return msg, f, false, nil
	}
	// Dead-letter it as the message of its own topic, with the history.
	m := *msg
	m.Delivery.Topic, m.Delivery.Partition, m.Delivery.Offset = st.topic, st.partition, st.offset
	g := *f
	if !st.first.IsZero() && st.first.Before(g.first) {
		g.first = st.first
	}
	return &m, &g, false, nil
}

// toTier publishes msg to tier st.tier+1 and settles the original.
func (r *retrier) toTier(ctx context.Context, msg *message.Message, f *failure, st tierState) error {
	t := r.delayed
	n := st.tier + 1
	d := t.delays[n-1]
	topic := t.topic(st.topic, n)
	now := r.now()
	due := now.Add(d)

	c := msg.Clone()
	if c.Headers == nil {
		c.Headers = make(map[string]string, 12)
	}
	for k := range c.Headers {
		if brokerHeader(k) || k == amqpExpirationHeader {
			delete(c.Headers, k)
		}
	}
	h := c.Headers
	h[delay.HeaderTopic] = st.topic
	if g := msg.Delivery.Group; g != "" {
		h[delay.HeaderGroup] = g
	}
	h[delay.HeaderTier] = strconv.Itoa(n)
	h[delay.HeaderDue] = delay.FormatTime(due)
	h[delay.HeaderAttempts] = strconv.Itoa(f.attempts)
	first := f.first
	if !st.first.IsZero() && st.first.Before(first) {
		first = st.first
	}
	h[delay.HeaderFirstFailure] = delay.FormatTime(first)
	if st.partition >= 0 {
		h[delay.HeaderPartition] = strconv.FormatInt(int64(st.partition), 10)
	}
	if st.offset >= 0 {
		h[delay.HeaderOffset] = strconv.FormatInt(st.offset, 10)
	}
	h[HeaderTierError] = truncateUTF8(f.err.Error(), r.errMaxLen)
	if r.spring {
		h[delay.HeaderSpringAttempts] = string(binary.BigEndian.AppendUint32(nil, uint32(f.attempts+1)))
		dueMS := due.UnixMilli()
		if due.After(time.UnixMilli(dueMS)) {
			dueMS++
		}
		h[delay.HeaderSpringBackoffTimestamp] = string(delay.AppendBigInt(nil, dueMS))
		if _, ok := h[delay.HeaderSpringOriginalTimestamp]; !ok && !msg.Time.IsZero() {
			h[delay.HeaderSpringOriginalTimestamp] = string(delay.AppendBigInt(nil, msg.Time.UnixMilli()))
		}
	}
	if r.onRetry != nil {
		r.onRetry(ctx, RetryEvent{Message: msg, Attempt: f.attempts, Err: f.err, Delay: d, Tier: n, TierTopic: topic})
	}
	if err := t.pub.Publish(ctx, topic, c); err != nil {
		// The original is redelivered and handled again: nothing lost.
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return ctxErr
		}
		return fmt.Errorf("retry: send message %q to delay tier %q: %w (handler error: %w)", msg.ID, topic, err, f.err)
	}
	return nil
}

// StripTierHeaders deletes the delayed-retry headers of both profiles
// (HeaderTier... and Spring's retry_topic-*) from h. Replay uses it, so
// that a replayed message starts again with a full budget.
func StripTierHeaders(h map[string]string) {
	for k := range h {
		if strings.HasPrefix(k, delay.HeaderPrefix) || strings.HasPrefix(k, "retry_topic-") {
			delete(h, k)
		}
	}
}

// Policy is the retry middleware together with what consuming its delay
// tiers needs. Create it with NewPolicy.
type Policy struct {
	r  *retrier
	mw message.Middleware
}

// NewPolicy returns the retry policy configured by opts, the same options
// New takes. Its Middleware is what New returns; its Subscribe consumes a
// topic and, with WithDelayedRetry, the topic's delay tiers, with one
// call. It fails as New does.
func NewPolicy(opts ...Option) (*Policy, error) {
	r, err := newRetrier(opts...)
	if err != nil {
		return nil, err
	}
	return &Policy{r: r, mw: r.wrap}, nil
}

// Middleware returns the retry middleware. Put it in the handler chain
// given to Subscribe, outside dedupe: message.Chain(handle, p.Middleware(),
// dedupeMW).
func (p *Policy) Middleware() message.Middleware { return p.mw }

// TierTopics returns the names of topic's delay tiers, in order; nil
// without WithDelayedRetry.
func (p *Policy) TierTopics(topic string) []string {
	t := p.r.delayed
	if t == nil {
		return nil
	}
	out := make([]string, len(t.delays))
	for i := range out {
		out[i] = t.topic(topic, i+1)
	}
	return out
}

// Delays returns WithDelayedRetry's delays; nil without it.
func (p *Policy) Delays() []time.Duration {
	if p.r.delayed == nil {
		return nil
	}
	return append([]time.Duration(nil), p.r.delayed.delays...)
}

// Subscribe consumes topic and each of its delay tiers with sub (one
// Subscribe call for the topic and one SubscribeTier call per tier, run
// concurrently) and hands every message to h, which must contain
// p.Middleware(): message.Chain(handle, p.Middleware(), ...). It blocks
// like sub.Subscribe: until ctx ends (it then lets every call drain and
// returns nil), sub is closed (an error matching message.ErrClosed), or a
// call fails (the others are stopped, and the first error is returned).
// message.WithReady's function in ctx is called once, when the topic and
// every tier are ready.
//
// With WithDelayedRetry, sub must implement delay.Subscriber (ferry's
// kafka, amqp and inmem subscribers do); otherwise Subscribe fails with
// message.ErrInvalidConfig. Without it, Subscribe is sub.Subscribe.
func (p *Policy) Subscribe(ctx context.Context, sub message.Subscriber, topic string, h message.Handler) error {
	if isnil.Is(sub) {
		return fmt.Errorf("retry: %w: Policy.Subscribe: subscriber is nil (%T)", message.ErrInvalidConfig, sub)
	}
	if h == nil {
		return fmt.Errorf("retry: subscribe %q: %w", topic, message.ErrNilHandler)
	}
	if ctx == nil {
		return fmt.Errorf("retry: %w: Policy.Subscribe: nil context", message.ErrInvalidConfig)
	}
	t := p.r.delayed
	if t == nil {
		return sub.Subscribe(ctx, topic, h)
	}
	ts, ok := sub.(delay.Subscriber)
	if !ok {
		return fmt.Errorf("retry: %w: subscriber %T cannot consume delay tiers (it does not implement delay.Subscriber)", message.ErrInvalidConfig, sub)
	}
	calls := 1 + len(t.delays)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readyc := make(chan struct{}, calls) // one send per call that got ready
	errs := make(chan error, calls)
	run := func(fn func(ctx context.Context) error) {
		rctx := message.WithReady(cctx, func() { readyc <- struct{}{} })
		go func() {
			err := fn(rctx)
			cancel() // one call ending ends them all
			errs <- err
		}()
	}
	run(func(ctx context.Context) error { return sub.Subscribe(ctx, topic, h) })
	for i, d := range t.delays {
		tier := t.topic(topic, i+1)
		run(func(ctx context.Context) error { return ts.SubscribeTier(ctx, topic, tier, d, h) })
	}
	var first error
	for done, readies := 0, 0; done < calls; {
		select {
		case err := <-errs:
			done++
			if err != nil && first == nil {
				first = err
			}
		case <-readyc:
			if readies++; readies == calls {
				message.SignalReady(ctx)
			}
		}
	}
	return first
}
