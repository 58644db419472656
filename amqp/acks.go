package amqp

import (
	"sync"
	"time"

	"github.com/ferrymsg/ferry/adapter/dispatch"
)

// ackFlushDelay bounds how long a settled delivery's ack is held before it
// is sent (ackCoalescer).
const ackFlushDelay = time.Millisecond

// maxAckHold is the most settled deliveries ackCoalescer holds before it
// sends their acks.
const maxAckHold = 64

// ackCoalescer gathers the acks of the deliveries Subscribe's handlers
// settled and sends them together, at the latest ackFlushDelay after the
// first of them settled, or at once when hold of them are waiting: per
// channel, the ones contiguous with everything that channel acked before
// go as one basic.ack with multiple set, the others one by one
// (batchAcker, shared with SubscribeBatch). A multiple ack is sent only for
// a tag whose message settled, and covers only tags that settled, so no
// unsettled message is ever acknowledged; the broker's queue process does
// one ack's work for many messages instead of one per message. A channel
// is flushed before ferry closes it (flush), so a graceful stop or a shard
// handed back acks everything that finished.
type ackCoalescer struct {
	a    *batchAcker
	hold int // flush at once at this many

	mu      sync.Mutex
	pending []*dispatch.Delivery
	timer   *time.Timer
	armed   bool
}

// newAckCoalescer holds at most min(maxAckHold, prefetch/4) acks (at least
// 1: with a small prefetch every ack goes at once, since the broker would
// send nothing more until it arrives).
func newAckCoalescer(prefetch int) *ackCoalescer {
	k := &ackCoalescer{a: newBatchAcker(), hold: max(1, min(maxAckHold, prefetch/4))}
	k.timer = time.AfterFunc(time.Hour, k.flush)
	k.timer.Stop()
	return k
}

// settle takes the settled delivery dl, whose Ref is a *ref.
func (k *ackCoalescer) settle(dl *dispatch.Delivery) {
	k.mu.Lock()
	k.pending = append(k.pending, dl)
	if len(k.pending) < k.hold {
		if !k.armed {
			k.armed = true
			k.timer.Reset(ackFlushDelay)
		}
		k.mu.Unlock()
		return
	}
	dls := k.takeLocked()
	k.mu.Unlock()
	k.a.ack(dls)
}

// takeLocked returns the pending deliveries and disarms the timer.
func (k *ackCoalescer) takeLocked() []*dispatch.Delivery {
	dls := k.pending
	k.pending = make([]*dispatch.Delivery, 0, k.hold)
	if k.armed {
		k.armed = false
		k.timer.Stop()
	}
	return dls
}

// flush sends every held ack now. Acks of a closed channel fail without
// sending: the broker has requeued those deliveries.
func (k *ackCoalescer) flush() {
	k.mu.Lock()
	dls := k.takeLocked()
	k.mu.Unlock()
	if len(dls) > 0 {
		k.a.ack(dls)
	}
}

// newBatchAcker returns a batchAcker sending on the consumer's channel.
func newBatchAcker() *batchAcker {
	return &batchAcker{chans: make(map[*consumer]*tagTrack), send: func(c *consumer, tag uint64, multiple bool) {
		_ = c.ch.Ack(tag, multiple)
	}}
}
