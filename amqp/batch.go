package amqp

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/adapter/offsets"
	"github.com/ferrymsg/ferry/message"
)

var _ message.BatchSubscriber = (*Subscriber)(nil)

// SubscribeBatch is Subscribe with a batch handler: it consumes the
// group's queues of topic and calls h with batches cut from the keyed
// dispatcher (see message.BatchHandler and the package doc, "Batches"): at
// most the subscriber's concurrency batches at once, no key in two of
// them, a key's messages in queue order. opts set the batch limits
// (message.WithBatchMaxMessages, WithBatchMaxBytes, WithBatchMaxWait;
// defaults 256 messages, 1 MiB of bodies, 10ms). A batch holds at most
// the channel prefetch (WithPrefetch) divided by the concurrency, since
// the broker sends no more than the prefetch unacknowledged: raise
// WithPrefetch for larger batches. What a batch settled is acked at once,
// with one multiple ack for the deliveries that are contiguous with what
// the channel acked before, one ack each for the others. A nil h fails
// with message.ErrNilHandler, a bad option with message.ErrInvalidConfig.
// It blocks and returns as Subscribe does.
func (s *Subscriber) SubscribeBatch(ctx context.Context, topic string, h message.BatchHandler, opts ...message.BatchOption) error {
	if h == nil {
		return fmt.Errorf("amqp: subscribe %q: %w", topic, message.ErrNilHandler)
	}
	bc, err := message.NewBatchConfig(opts...)
	if err != nil {
		return fmt.Errorf("amqp: subscribe %q: %w", topic, err)
	}
	conc := max(1, s.cfg.Concurrency)
	bc.MaxMessages = max(1, min(bc.MaxMessages, s.cfg.prefetchCount()/conc))
	return s.subscribe(ctx, topic, nil, &dispatch.Batch{Handler: h, Limits: bc})
}

// batchAcks completes bat (nil for Subscribe) with the acknowledgement of
// a batch's settled deliveries.
func (s *Subscriber) batchAcks(bat *dispatch.Batch) *dispatch.Batch {
	if bat == nil {
		return nil
	}
	a := newBatchAcker() // acks.go
	bat.Settled = func(dls []*dispatch.Delivery) {
		for _, dl := range dls {
			s.cfg.observeHandled(dl)
		}
		a.ack(dls)
	}
	return bat
}

// maxTagGap is how far a channel's delivery tags may run ahead of its
// oldest unacked one before batchAcker stops tracking the channel (a
// delivery acked elsewhere, such as an undecodable one, or one failing for
// long): from then on it acks one by one.
const maxTagGap = 1 << 16

// batchAcker acks the settled deliveries of batches: per channel, those
// contiguous with everything acked before in one multiple ack, the others
// one by one. Delivery tags count up from 1 on each channel.
type batchAcker struct {
	mu    sync.Mutex
	chans map[*consumer]*tagTrack
	send  func(c *consumer, tag uint64, multiple bool) // the channel's Ack
}

type tagTrack struct {
	t   offsets.Tracker // the lowest tag not yet acked, and the acked ones past it
	off bool            // given up: acks one by one
}

func (a *batchAcker) ack(dls []*dispatch.Delivery) {
	byCh := make(map[*consumer][]uint64, 1)
	var order []*consumer // channels in the order of their first delivery here
	for _, dl := range dls {
		r := dl.Ref.(*ref)
		if _, ok := byCh[r.c]; !ok {
			order = append(order, r.c)
		}
		byCh[r.c] = append(byCh[r.c], r.tag)
	}
	for _, c := range order {
		tags := byCh[c]
		slices.Sort(tags)
		a.mu.Lock()
		tr := a.chans[c]
		if tr == nil {
			if len(a.chans) >= 64 {
				for o := range a.chans {
					if o.ch == nil || o.ch.IsClosed() {
						delete(a.chans, o)
					}
				}
			}
			tr = &tagTrack{}
			tr.t.Reset(1)
			a.chans[c] = tr
		}
		// The highest of these tags below the new low-water mark acks
		// them all at once; every tag below it was acked or is here.
		var multi uint64
		if !tr.off {
			for _, tag := range tags {
				tr.t.Settle(int64(tag))
			}
			next := uint64(tr.t.Next())
			for _, tag := range tags {
				if tag < next {
					multi = tag
				}
			}
			if tags[len(tags)-1] >= next+maxTagGap {
				tr.off = true
			}
		}
		// Sent under the lock, so that no multiple ack of a later call
		// overtakes these (acking a tag twice closes the channel). A dead
		// channel's acks fail without sending: the broker requeued them.
		for _, tag := range tags {
			switch {
			case multi != 0 && tag < multi:
				continue
			case tag == multi:
				a.send(c, tag, true)
			default:
				a.send(c, tag, false)
			}
		}
		a.mu.Unlock()
	}
}
