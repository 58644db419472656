// Package delay is the adapter side of the retry middleware's delayed
// retry tiers (retry.WithDelayedRetry): the headers a message carries
// while it waits outside its topic, the interface a subscriber implements
// to consume a tier, and the Gate with which a log-based adapter (Kafka,
// inmem) holds a tier partition's records until they are due.
//
// Users do not import this package: retry.SubscribeWithTiers calls
// SubscribeTier for them. Adapter authors implement Subscriber.
//
// # The tier contract
//
// A tier is a topic (Kafka, inmem) or wait queue (RabbitMQ) into which
// the retry middleware publishes a failed message with HeaderDue set to
// the time it may be handled again. An adapter's SubscribeTier must:
//
//   - never hand a message to the handler before its due time (Due), and
//     not busy-wait for it: pause the partition (Kafka) or let the broker
//     hold it (RabbitMQ's per-queue TTL);
//   - hand the handler only messages of its own group (HeaderGroup), and
//     settle the others without a handler call (Handler does both);
//   - set Delivery.Tier and count the earlier attempts in
//     Delivery.Attempt (Apply);
//   - keep the waiting messages durable: a broker or subscriber restart
//     while they wait loses none of them.
package delay

import (
	"context"
	"strconv"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// Headers of a message in a delay tier. The retry middleware writes them;
// values are UTF-8 text. They stay on the message when it goes on to the
// next tier and to the dead-letter topic, where they tell its history.
const (
	// HeaderPrefix starts every ferry tier header name.
	HeaderPrefix = "ferry-retry-"
	// HeaderTopic is the message's own topic, the one it failed on first
	// and goes back to after a replay.
	HeaderTopic = "ferry-retry-topic"
	// HeaderGroup is the consumer group whose handler failed: only that
	// group handles the message again.
	HeaderGroup = "ferry-retry-group"
	// HeaderTier is the tier the message waits in (1 for the first),
	// in decimal.
	HeaderTier = "ferry-retry-tier"
	// HeaderDue is the earliest time at which the message may be handled
	// again, RFC 3339 in UTC with milliseconds (TimeFormat), rounded up
	// to the millisecond.
	HeaderDue = "ferry-retry-due"
	// HeaderAttempts is the number of failed handler calls so far, all
	// tiers included, in decimal.
	HeaderAttempts = "ferry-retry-attempts"
	// HeaderFirstFailure is the time of the first failed handler call,
	// RFC 3339 in UTC with milliseconds.
	HeaderFirstFailure = "ferry-retry-first-failure"
	// HeaderPartition and HeaderOffset are the message's position in its
	// own topic, in decimal; absent where the broker has none (AMQP).
	HeaderPartition = "ferry-retry-original-partition"
	HeaderOffset    = "ferry-retry-original-offset"
)

// Spring Kafka's retry-topic headers (@RetryableTopic), written besides
// ferry's when the retry middleware's Spring profile is on.
const (
	// HeaderSpringAttempts is the number of the next attempt as a 4-byte
	// big-endian int (2 on the first retry topic).
	HeaderSpringAttempts = "retry_topic-attempts"
	// HeaderSpringBackoffTimestamp is the due time in Unix milliseconds,
	// Java's BigInteger.toByteArray (big-endian two's complement, as
	// few bytes as the value needs).
	HeaderSpringBackoffTimestamp = "retry_topic-backoff-timestamp"
	// HeaderSpringOriginalTimestamp is the original record's timestamp
	// in Unix milliseconds, encoded like HeaderSpringBackoffTimestamp.
	HeaderSpringOriginalTimestamp = "retry_topic-original-timestamp"
)

// TimeFormat is the layout of HeaderDue and HeaderFirstFailure.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Subscriber is implemented by subscribers that can consume a delay tier.
// retry.SubscribeWithTiers calls SubscribeTier once per tier, beside the
// Subscribe call of the topic itself.
type Subscriber interface {
	// SubscribeTier consumes the tier tierTopic of topic, whose messages
	// wait delay, for the subscriber's group, and calls h for each message
	// once it is due, until ctx ends (nil) or the subscriber is closed
	// (message.ErrClosed), as Subscribe does. Where the broker itself
	// routes a due message back to the topic's queue (RabbitMQ),
	// SubscribeTier declares the tier and keeps it declared, and the
	// topic's own Subscribe call handles the message.
	SubscribeTier(ctx context.Context, topic, tierTopic string, delay time.Duration, h message.Handler) error
}

// FormatTime formats t as HeaderDue and HeaderFirstFailure hold it:
// TimeFormat in UTC, rounded up to the millisecond, so that the written
// due time is never before the real one.
func FormatTime(t time.Time) string {
	if r := t.Truncate(time.Millisecond); r.Before(t) {
		t = r.Add(time.Millisecond)
	}
	return t.UTC().Format(TimeFormat)
}

// ParseTime parses a HeaderDue or HeaderFirstFailure value.
func ParseTime(v string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// Due returns the due time of a tier message: HeaderDue, else Spring's
// HeaderSpringBackoffTimestamp, else false.
func Due(h map[string]string) (time.Time, bool) {
	if v, ok := h[HeaderDue]; ok {
		return ParseTime(v)
	}
	if v, ok := h[HeaderSpringBackoffTimestamp]; ok {
		if ms, ok := ParseBigInt(v); ok {
			return time.UnixMilli(ms), true
		}
	}
	return time.Time{}, false
}

// Tier returns the HeaderTier and HeaderAttempts values of a message, and
// whether it has a valid tier header.
func Tier(h map[string]string) (tier, attempts int, ok bool) {
	v, ok := h[HeaderTier]
	if !ok {
		return 0, 0, false
	}
	tier, err := strconv.Atoi(v)
	if err != nil || tier < 1 {
		return 0, 0, false
	}
	if a, err := strconv.Atoi(h[HeaderAttempts]); err == nil && a > 0 {
		attempts = a
	}
	return tier, attempts, true
}

// Apply sets msg.Delivery.Tier from the tier headers and adds the
// attempts made before the message entered the tier to
// msg.Delivery.Attempt. Adapters call it once per delivery of a message
// that may come from a tier, before the first handler call; a message
// without tier headers is left as it is.
func Apply(msg *message.Message) {
	if len(msg.Headers) == 0 {
		return
	}
	tier, attempts, ok := Tier(msg.Headers)
	if !ok {
		return
	}
	msg.Delivery.Tier = tier
	msg.Delivery.Attempt = max(msg.Delivery.Attempt, 1) + attempts
}

// ApplyReturned is Apply for a message delivered from topic to group
// where a tier routes messages back into the topic's own queues
// (RabbitMQ): it applies the tier headers only when they say the message
// is topic's and group's, so that a consumer of a dead-letter topic, for
// example, does not take the history of a dead-lettered copy for its own
// attempts.
func ApplyReturned(msg *message.Message, topic, group string) {
	if len(msg.Headers) == 0 {
		return
	}
	if t, ok := msg.Headers[HeaderTopic]; !ok || t != topic || Foreign(msg, group) {
		return
	}
	Apply(msg)
}

// Foreign reports whether msg is a tier message of another group than
// group (HeaderGroup set and different).
func Foreign(msg *message.Message, group string) bool {
	g, ok := msg.Headers[HeaderGroup]
	return ok && g != group
}

// Handler wraps a tier's handler: a message of another group (Foreign)
// is settled without calling h. Several groups may fail messages of one
// topic into the same tier topic (Spring's naming has no group in it);
// each handles only its own.
func Handler(h message.Handler, group string) message.Handler {
	return func(ctx context.Context, msg *message.Message) error {
		if msg != nil && Foreign(msg, group) {
			return nil
		}
		return h(ctx, msg)
	}
}

// AppendBigInt appends v as Java's BigInteger.valueOf(v).toByteArray()
// encodes it: big-endian two's complement in the fewest bytes that keep
// the sign.
func AppendBigInt(b []byte, v int64) []byte {
	n := 8
	for n > 1 {
		top := byte(v >> (8 * (n - 1)))
		next := byte(v >> (8 * (n - 2)))
		if (top == 0 && next&0x80 == 0) || (top == 0xff && next&0x80 != 0) {
			n--
			continue
		}
		break
	}
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// ParseBigInt decodes a BigInteger.toByteArray value of 1 to 8 bytes.
func ParseBigInt(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 8 {
		return 0, false
	}
	n := int64(int8(v[0])) // sign-extends
	for i := 1; i < len(v); i++ {
		n = n<<8 | int64(v[i])
	}
	return n, true
}
