package kafka

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// System is this adapter's messaging.system, in Delivery.System and
// message.Event.System.
const System = "kafka"

// WithObserver adds o to the observers of the adapter's events
// (message.Observer): on a Publisher each Publish call (EventPublished,
// EventPublishFailed); on both each failed dial to a broker and the first
// one that succeeds after failures (EventConnectionLost,
// EventConnectionRestored, with the broker's host:port); on a Subscriber
// each handled message and handler error (EventHandled,
// EventHandlerError), each failed commit
// (EventCommitFailed: franz-go's autocommits, the commit on revocation
// and the last one at shutdown), and the consumer lag of each assigned
// partition (EventLag: the partition's high watermark, which every fetch
// response carries, minus the group's commit point; reported at most
// every 100 ms and only when it changed, so no request is made for it,
// and Lag -1 when the partition is revoked or lost). otelferry's Telemetry
// is one. Several WithObserver calls add up; WithLogger adds
// message.LogEvents. A nil o is skipped; a typed nil is an error wrapping
// message.ErrInvalidConfig. Publisher and Subscriber. Default: none.
func WithObserver(o message.Observer) Option {
	return sharedOpt(func(c *config) error {
		if o == nil {
			return nil
		}
		if isnil.Is(o) {
			return invalid("WithObserver: the observer is a typed nil")
		}
		c.observers = append(c.observers, o)
		return nil
	})
}

// MessagingSystem returns System, for instrumentation such as otelferry.
func (p *Publisher) MessagingSystem() string { return System }

// MessagingSystem returns System, for instrumentation such as otelferry.
func (s *Subscriber) MessagingSystem() string { return System }

// observePublish reports the outcome of a Publish call.
func observePublish(ctx context.Context, o message.Observer, topic string, msgs []*message.Message, start time.Time, err error) {
	adapter.ObservePublish(ctx, o, System, topic, msgs, start, err)
}

// handlerErrorObserver is the dispatcher's error observer: the event for
// each handler error; nil without an observer.
func (c *config) handlerErrorObserver() func(*dispatch.Delivery, error) {
	return dispatch.ErrorObserver(c.obs)
}

func (sub *subscription) observeHandled(dl *dispatch.Delivery) {
	dispatch.ObserveHandled(sub.cfg.obs, dl)
}

// commitCallback reports failed autocommits (kgo.AutoCommitCallback);
// nil without an observer. franz-go retries them itself at the next
// interval.
func (sub *subscription) commitCallback() []kgo.Opt {
	if sub.cfg.obs == nil {
		return nil
	}
	return []kgo.Opt{kgo.AutoCommitCallback(func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			sub.commitFailed(-1, err)
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					sub.commitFailed(p.Partition, perr)
				}
			}
		}
	})}
}

// commitFailed reports a failed commit of partition (-1: several).
func (sub *subscription) commitFailed(partition int32, err error) {
	if o := sub.cfg.obs; o != nil && err != nil {
		o.Observe(context.Background(), message.Event{Kind: message.EventCommitFailed, System: System,
			Topic: sub.topic, Group: sub.group, Partition: partition, Err: err})
	}
}

// partLag is what a partition's lag is computed from, guarded by
// partState.mu: the high watermark of the last fetch, the offset of the
// first record fetched in this assignment (the position until something
// is settled; -1 before), and the last lag reported (-1 before).
type partLag struct {
	hw, first, reported int64
}

// noteFetch records the high watermark of a fetch of ps's partition.
func (ps *partState) noteFetch(p *kgo.FetchTopicPartition) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(p.Records) > 0 && ps.lag.first < 0 {
		ps.lag.first = p.Records[0].Offset
	}
	ps.lag.hw = max(ps.lag.hw, p.HighWatermark)
}

// changedLag returns the partition's lag if it changed since the last
// call: high watermark minus the commit point.
func (ps *partState) changedLag() (int64, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.dead || ps.lag.first < 0 {
		return 0, false
	}
	pos := ps.lag.first
	if p, ok := ps.pointLocked(); ok {
		pos = p.Offset
	}
	lag := max(ps.lag.hw-pos, 0)
	if lag == ps.lag.reported {
		return 0, false
	}
	ps.lag.reported = lag
	return lag, true
}

// reportLag reports the partitions whose lag changed (markLoop).
func (sub *subscription) reportLag() {
	o := sub.cfg.obs
	if o == nil {
		return
	}
	sub.mu.Lock()
	parts := make([]*partState, 0, len(sub.parts))
	for _, ps := range sub.parts {
		parts = append(parts, ps)
	}
	sub.mu.Unlock()
	for _, ps := range parts {
		if lag, ok := ps.changedLag(); ok {
			o.Observe(sub.ctx, message.Event{Kind: message.EventLag, System: System, Topic: sub.topic, Group: sub.group,
				Partition: ps.partition, Lag: lag})
		}
	}
}

// forgetLag reports that partitions left this subscriber (Lag -1).
func (sub *subscription) forgetLag(gone []*partState) {
	o := sub.cfg.obs
	if o == nil {
		return
	}
	for _, ps := range gone {
		o.Observe(sub.ctx, message.Event{Kind: message.EventLag, System: System, Topic: sub.topic, Group: sub.group,
			Partition: ps.partition, Lag: -1})
	}
}

// connHook reports, per broker address, each failed dial
// (EventConnectionLost, Attempt counting the failures in a row) and the
// first dial that succeeds after failures (EventConnectionRestored).
// franz-go opens and closes connections by itself (idle ones are reaped),
// so a closed connection alone is not reported: only a broker that cannot
// be reached is.
type connHook struct {
	o    message.Observer
	role string

	mu   sync.Mutex
	down map[string]int // address -> failed dials in a row
}

// connHooks returns the client option with the connection hook; none
// without an observer.
func connHooks(o message.Observer, role string) []kgo.Opt {
	if o == nil {
		return nil
	}
	return []kgo.Opt{kgo.WithHooks(&connHook{o: o, role: role, down: map[string]int{}})}
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h *connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	h.mu.Lock()
	n := h.down[addr]
	if err != nil {
		h.down[addr] = n + 1
	} else {
		delete(h.down, addr)
	}
	h.mu.Unlock()
	ev := message.Event{System: System, Partition: -1, Broker: addr, Role: h.role}
	switch {
	case err != nil:
		ev.Kind, ev.State, ev.Attempt, ev.Err = message.EventConnectionLost, "unreachable", n+1, err
	case n > 0:
		ev.Kind, ev.State, ev.Attempt = message.EventConnectionRestored, "connected", n
	default:
		return
	}
	h.o.Observe(context.Background(), ev)
}
