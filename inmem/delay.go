package inmem

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

var _ delay.Subscriber = (*Subscriber)(nil)

// tierKey carries a tier's delay from SubscribeTier into Subscribe.
type tierKey struct{}

// SubscribeTier consumes tierTopic, a delay tier of topic (see
// retry.WithDelayedRetry), as Subscribe consumes a topic, with one
// difference: a message is handed to h only once it is due (its
// delay.HeaderDue header; without one, its Time plus delay). While a
// partition's oldest message waits, the member stops fetching that
// partition and a timer wakes it at the due time; the other partitions,
// and the topic itself, go on. Messages another group failed into the
// same tier are settled without calling h. The tier is a topic like any
// other: what waits in it survives a Subscribe call that ends, and the
// next member of the group resumes it from the commit point.
//
// retry.Policy.Subscribe calls it; applications rarely do.
func (s *Subscriber) SubscribeTier(ctx context.Context, topic, tierTopic string, d time.Duration, h message.Handler) error {
	if ctx == nil {
		return fmt.Errorf("inmem: subscribe tier %q: %w: nil context", tierTopic, message.ErrInvalidConfig)
	}
	if h == nil {
		return fmt.Errorf("inmem: subscribe tier %q: %w", tierTopic, message.ErrNilHandler)
	}
	if err := adapter.ValidateLogTopic(topic); err != nil {
		return fmt.Errorf("inmem: subscribe tier of %q: %w", topic, err)
	}
	if d <= 0 {
		return fmt.Errorf("inmem: subscribe tier %q: %w: delay %v must be positive", tierTopic, message.ErrInvalidConfig, d)
	}
	return s.Subscribe(context.WithValue(ctx, tierKey{}, d), tierTopic, delay.Handler(h, s.conf.Group))
}

// tierGate is a tier member's delay.Gate and its paused partitions
// (fetchLocked skips those).
type tierGate struct {
	g      *delay.Gate
	paused []atomic.Bool
	group  string
}

// newTierGate returns the gate of a SubscribeTier call, nil for Subscribe.
func newTierGate(ctx context.Context, disp *dispatch.Dispatcher, m *member, partitions int, group string) *tierGate {
	d, ok := ctx.Value(tierKey{}).(time.Duration)
	if !ok {
		return nil
	}
	tg := &tierGate{paused: make([]atomic.Bool, partitions), group: group}
	g := delay.NewGate(ctx, d)
	g.Submit = func(ctx context.Context, dls []*dispatch.Delivery) error {
		_, err := disp.SubmitBatch(ctx, dls)
		return err
	}
	g.Pause = func(p int32) { tg.paused[p].Store(true) }
	g.Resume = func(p int32) {
		tg.paused[p].Store(false)
		m.poke() // fetch it again
	}
	tg.g = g
	return tg
}

// isPaused reports whether fetching partition i waits for its head.
func (tg *tierGate) isPaused(i int) bool { return tg != nil && tg.paused[i].Load() }

// add hands a fetched batch to the gate, a partition's run at a time.
func (tg *tierGate) add(batch []*delivery) error {
	dls := make([]*dispatch.Delivery, 0, len(batch))
	for i := 0; i < len(batch); {
		r := batch[i].ref
		j := i
		dls = dls[:0]
		for j < len(batch) && batch[j].ref.part == r.part && batch[j].ref.epoch == r.epoch {
			dls = append(dls, &batch[j].dl)
			j++
		}
		if err := tg.g.Add(int32(r.part), r.epoch, tg.group, dls); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// drop forgets partition i's held messages before it is drained.
func (tg *tierGate) drop(i int) {
	if tg != nil {
		tg.g.Drop(int32(i))
	}
}

func (tg *tierGate) close() {
	if tg != nil {
		tg.g.Close()
	}
}
