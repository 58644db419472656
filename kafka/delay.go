package kafka

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

var _ delay.Subscriber = (*Subscriber)(nil)

// tierKey carries a tier's tierSpec from SubscribeTier into run.
type tierKey struct{}

// tierSpec is what run needs to know of a tier.
type tierSpec struct {
	delay   time.Duration
	groupID string // the tier's Kafka consumer group
}

// TierFetchMaxWait is the kgo.FetchMaxWait of a delay tier's client: a
// partition resumed when its head is due is fetched after the fetch in
// flight returns, which waits at most this long for new data (franz-go's
// default is 5 s). It applies after WithClientOptions.
const TierFetchMaxWait = 250 * time.Millisecond

// SubscribeTier consumes tierTopic, a delay tier of topic (see
// retry.WithDelayedRetry: Spring Kafka's retry topics), in the
// Subscriber's group, as Subscribe consumes a topic, with one difference:
// a record is handed to h only once it is due, at its delay.HeaderDue
// header (else Spring's retry_topic-backoff-timestamp, else its
// timestamp plus delay). When a partition's oldest unhandled record is
// not due, the partition is paused (kgo.PauseFetchPartitions) and a timer
// resumes it at the due time: no record is handled early, nothing polls,
// and the other partitions, and the topic itself, keep flowing. Records
// behind the head wait with it (one tier has one delay, so they are due
// in about the same order). Records another group failed into the same
// tier topic are settled without calling h.
//
// The tier is consumed in a consumer group of its own, the group's name
// and the tier's suffix (group "billing", tier "orders-retry-10000":
// "billing-retry-10000"), so that joining and leaving it never
// rebalances the topic's group; Delivery.Group is the Subscriber's group
// all the same. A new tier group starts at the tier's earliest record,
// whatever WithStartOffset says, so that nothing sent to the tier before
// its first join is skipped.
//
// The held records are not committed, so a restart or a rebalance while
// they wait loses none: the next owner fetches them again and waits for
// them the same way. The tier topic is created like any topic
// (WithTopicCreation). retry.Policy.Subscribe calls SubscribeTier;
// applications rarely do.
func (s *Subscriber) SubscribeTier(ctx context.Context, topic, tierTopic string, d time.Duration, h message.Handler) error {
	if ctx == nil {
		return fmt.Errorf("kafka: subscribe tier %q: %w: nil context", tierTopic, message.ErrInvalidConfig)
	}
	if h == nil {
		return fmt.Errorf("kafka: subscribe tier %q: %w", tierTopic, message.ErrNilHandler)
	}
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("kafka: subscribe tier %q: %w: delay %v must be positive", tierTopic, message.ErrInvalidConfig, d)
	}
	suffix := strings.TrimPrefix(tierTopic, topic)
	if suffix == tierTopic || suffix == "" {
		suffix = "." + tierTopic
	}
	spec := tierSpec{delay: d, groupID: s.cfg.Group + suffix}
	return s.Subscribe(context.WithValue(ctx, tierKey{}, spec), tierTopic, delay.Handler(h, s.cfg.Group))
}

// newTierGate returns the gate of a SubscribeTier call's subscription,
// nil for Subscribe. Its Pause and Resume act on sub.cl, set before the
// first poll.
func newTierGate(ctx context.Context, sub *subscription) *delay.Gate {
	spec, ok := ctx.Value(tierKey{}).(tierSpec)
	if !ok {
		return nil
	}
	g := delay.NewGate(ctx, spec.delay)
	g.Submit = func(ctx context.Context, dls []*dispatch.Delivery) error {
		_, err := sub.d.SubmitBatch(ctx, dls)
		return err
	}
	g.Pause = func(p int32) { sub.cl.PauseFetchPartitions(map[string][]int32{sub.topic: {p}}) }
	g.Resume = func(p int32) { sub.cl.ResumeFetchPartitions(map[string][]int32{sub.topic: {p}}) }
	return g
}

// tierClientOpts are the extra client options of a tier subscription
// (ctx is SubscribeTier's): its own consumer group, TierFetchMaxWait and
// the earliest offset for a new group.
func tierClientOpts(ctx context.Context) []kgo.Opt {
	spec, ok := ctx.Value(tierKey{}).(tierSpec)
	if !ok {
		return nil
	}
	return []kgo.Opt{
		kgo.ConsumerGroup(spec.groupID),
		kgo.FetchMaxWait(TierFetchMaxWait),
		// A tier's group starts at the tier's beginning whatever
		// WithStartOffset says: a record sent to the tier before the
		// group's first join must not be skipped.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
}
