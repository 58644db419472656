package messagetest_test

// These tests check that the suite can fail: each mutant breaks one promise
// of the contract by wrapping the inmem adapter, and the subtest that guards
// that promise must fail on it. Each mutant runs in a child process (this
// test binary, re-run with FERRY_MESSAGETEST_MUTANT set), because a failing
// subtest cannot be observed from inside the same test.

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/mutanttest"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

const mutantEnv = "FERRY_MESSAGETEST_MUTANT"

// pub and sub wrap an adapter's publisher and subscriber; nil funcs pass
// through.
type pub struct {
	message.Publisher
	publish func(ctx context.Context, topic string, msgs ...*message.Message) error
	close   func() error
}

func (p *pub) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if p.publish != nil {
		return p.publish(ctx, topic, msgs...)
	}
	return p.Publisher.Publish(ctx, topic, msgs...)
}

func (p *pub) Close() error {
	if p.close != nil {
		return p.close()
	}
	return p.Publisher.Close()
}

type sub struct {
	message.Subscriber
	subscribe func(ctx context.Context, topic string, h message.Handler) error
}

func (s *sub) Subscribe(ctx context.Context, topic string, h message.Handler) error {
	if s.subscribe != nil {
		return s.subscribe(ctx, topic, h)
	}
	return s.Subscriber.Subscribe(ctx, topic, h)
}

// wrapHandler returns a sub whose Subscribe wraps the handler with w.
func wrapHandler(s message.Subscriber, w func(message.Handler) message.Handler) *sub {
	return &sub{Subscriber: s, subscribe: func(ctx context.Context, topic string, h message.Handler) error {
		if h == nil {
			return s.Subscribe(ctx, topic, nil)
		}
		return s.Subscribe(ctx, topic, w(h))
	}}
}

// mutant breaks one promise; fails lists the suite's subtests that must
// fail on it (as named in Run), passes those that must still pass on it
// (showing that the failing ones catch what these cannot).
type mutant struct {
	name   string
	fails  []string
	passes []string
	pub    func(p message.Publisher) message.Publisher
	sub    func(s message.Subscriber, cfg *messagetest.SubscriberConfig) message.Subscriber
	group  func(cfg *messagetest.SubscriberConfig) // changes the config before the subscriber is built
	// lieDuringOutage makes Publish return nil without publishing while
	// the simulated broker restart is under way.
	lieDuringOutage bool
	// noKeyOrder runs the suite with Features.NoKeyOrder, as a Kafka
	// share group does.
	noKeyOrder bool
}

var groupSeq atomic.Int64

var mutants = []mutant{
	{
		// Features.NoKeyOrder (a Kafka share group) relaxes the order
		// checks, not redelivery: an adapter that settles a failed
		// message, as franz-go's share consumer auto-accepts an unacked
		// record at the next poll, still fails.
		name:       "without key order: settles a failed message instead of redelivering it",
		noKeyOrder: true,
		fails:      []string{"handler error redelivers with growing attempt before later same-key messages", "handler panic is treated as an error and the subscriber keeps running"},
		passes:     []string{"round trip keeps ID, key, payload, headers and time", "two groups each receive every message"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					_ = adapterCall(ctx, h, m)
					return nil
				}
			})
		},
	},
	{
		// An adapter that recycles a delivered message's payload buffer
		// for the next delivery once the handler has returned.
		name:   "reuses a delivered message after its handler returns",
		fails:  []string{"a handler may keep a delivered message: it stays intact after the handler returns"},
		passes: []string{"round trip keeps ID, key, payload, headers and time"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					err := h(ctx, m)
					for i := range m.Payload {
						m.Payload[i] = 0
					}
					return err
				}
			})
		},
	},
	{
		name:  "drops one message in 100",
		fails: []string{"batch publish of 1000 messages arrives complete"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			var n atomic.Int64
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					if n.Add(1)%100 == 50 {
						return nil
					}
					return h(ctx, m)
				}
			})
		},
	},
	{
		name:  "handles one message in 100 twice",
		fails: []string{"batch publish of 1000 messages arrives complete", "concurrent publishes from 20 goroutines arrive complete without duplicates"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			var n atomic.Int64
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					if n.Add(1)%100 == 50 {
						_ = h(ctx, m)
					}
					return h(ctx, m)
				}
			})
		},
	},
	{
		name:  "loses headers and rounds time to seconds",
		fails: []string{"round trip keeps ID, key, payload, headers and time"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					c := *m
					c.Headers = nil
					c.Time = c.Time.Truncate(time.Second)
					return h(ctx, &c)
				}
			})
		},
	},
	{
		name:  "publishes copies and leaves the caller's ID and time empty",
		fails: []string{"publish fills in an empty ID and time"},
		pub: func(p message.Publisher) message.Publisher {
			return &pub{Publisher: p, publish: func(ctx context.Context, topic string, msgs ...*message.Message) error {
				cs := make([]*message.Message, len(msgs))
				for i, m := range msgs {
					if m != nil {
						cs[i] = m.Clone()
					}
				}
				return p.Publish(ctx, topic, cs...)
			}}
		},
	},
	{
		name:  "publishes to one topic",
		fails: []string{"topics are isolated"},
		pub: func(p message.Publisher) message.Publisher {
			var mu sync.Mutex
			first := ""
			return &pub{Publisher: p, publish: func(ctx context.Context, topic string, msgs ...*message.Message) error {
				mu.Lock()
				if first == "" {
					first = topic
				}
				t := first
				mu.Unlock()
				return p.Publish(ctx, t, msgs...)
			}}
		},
	},
	{
		name:  "puts every subscriber in one group",
		fails: []string{"two groups each receive every message"},
		group: func(cfg *messagetest.SubscriberConfig) { cfg.Group = "everyone" },
	},
	{
		name:  "gives every subscriber its own group",
		fails: []string{"subscribers of one group split the messages without overlap", "resumed subscriber does not get settled messages again"},
		group: func(cfg *messagetest.SubscriberConfig) {
			cfg.Group += "-" + string(rune('a'+groupSeq.Add(1)%26)) + time.Now().Format("150405.000000000")
		},
	},
	{
		name:  "runs one handler at a time",
		fails: []string{"same-key messages are handled in order and never concurrently, up to the concurrency limit"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			var mu sync.Mutex
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					mu.Lock()
					defer mu.Unlock()
					return h(ctx, m)
				}
			})
		},
	},
	{
		name:  "ignores the concurrency limit",
		fails: []string{"same-key messages are handled in order and never concurrently, up to the concurrency limit"},
		group: func(cfg *messagetest.SubscriberConfig) { cfg.Concurrency *= 4 },
	},
	{
		name:  "publishes without keys, so same-key messages run at once and out of order",
		fails: []string{"same-key messages are handled in order and never concurrently, up to the concurrency limit"},
		pub: func(p message.Publisher) message.Publisher {
			return &pub{Publisher: p, publish: func(ctx context.Context, topic string, msgs ...*message.Message) error {
				cs := make([]*message.Message, len(msgs))
				for i, m := range msgs {
					cs[i] = m.Clone()
					cs[i].Key = ""
				}
				return p.Publish(ctx, topic, cs...)
			}}
		},
	},
	{
		// Like a work queue that every member consumes (RabbitMQ's round
		// robin): each member keeps key order inside itself, but a key's
		// messages run on several members at once and in any order.
		name: "dispatcher ignores keys across members",
		fails: []string{
			"members of one group keep per-key order and never overlap a key",
			"per-key order holds while members join, leave and crash",
		},
		// One subscriber alone keeps key order.
		passes: []string{"same-key messages are handled in order and never concurrently, up to the concurrency limit"},
		group: func(cfg *messagetest.SubscriberConfig) {
			cfg.Group += crossSuffix + strconv.FormatInt(groupSeq.Add(1), 10)
		},
		sub: func(s message.Subscriber, cfg *messagetest.SubscriberConfig) message.Subscriber {
			claims := crossClaims(cfg.Group[:strings.Index(cfg.Group, crossSuffix)])
			return wrapHandler(s, claims.handler)
		},
	},
	{
		name:  "reports attempt 1 on every delivery",
		fails: []string{"handler error redelivers with growing attempt before later same-key messages", "handler panic is treated as an error and the subscriber keeps running"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					c := *m
					c.Delivery.Attempt = 1
					return h(ctx, &c)
				}
			})
		},
	},
	{
		name:  "settles failed messages",
		fails: []string{"handler error redelivers with growing attempt before later same-key messages"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapHandler(s, func(h message.Handler) message.Handler {
				return func(ctx context.Context, m *message.Message) error {
					_ = h(ctx, m)
					return nil
				}
			})
		},
	},
	{
		name:  "cancels handlers as soon as shutdown starts",
		fails: []string{"graceful shutdown lets in-flight handlers finish and settles them"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return &sub{Subscriber: s, subscribe: func(ctx context.Context, topic string, h message.Handler) error {
				if h == nil {
					return s.Subscribe(ctx, topic, nil)
				}
				return s.Subscribe(ctx, topic, func(hctx context.Context, m *message.Message) error {
					merged, cancel := context.WithCancel(hctx)
					defer cancel()
					stop := context.AfterFunc(ctx, cancel)
					defer stop()
					return h(merged, m)
				})
			}}
		},
	},
	{
		name:  "returns the context error on cancel",
		fails: []string{"cancelling an idle subscribe returns nil"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return &sub{Subscriber: s, subscribe: func(ctx context.Context, topic string, h message.Handler) error {
				if err := s.Subscribe(ctx, topic, h); err != nil {
					return err
				}
				return ctx.Err()
			}}
		},
	},
	{
		name:  "fails a second Close",
		fails: []string{"close is idempotent"},
		pub: func(p message.Publisher) message.Publisher {
			var closed atomic.Bool
			return &pub{Publisher: p, close: func() error {
				if closed.Swap(true) {
					return errors.New("already closed")
				}
				return p.Close()
			}}
		},
	},
	{
		name:  "drops nil messages instead of rejecting the batch",
		fails: []string{"bad input is rejected and publishes nothing"},
		pub: func(p message.Publisher) message.Publisher {
			return &pub{Publisher: p, publish: func(ctx context.Context, topic string, msgs ...*message.Message) error {
				var ok []*message.Message
				for _, m := range msgs {
					if m != nil {
						ok = append(ok, m)
					}
				}
				return p.Publish(ctx, topic, ok...)
			}}
		},
	},
	{
		name:            "acknowledges publishes it lost during a broker restart",
		fails:           []string{"broker restart during publish and consume loses nothing"},
		lieDuringOutage: true,
	},
	{
		// Ready is shadowed by a function of the wrapper's own, so the
		// caller's is never called.
		name:   "never signals ready",
		fails:  []string{"subscribe signals ready once it consumes, and a message published right after arrives"},
		passes: []string{"cancelling an idle subscribe returns nil"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return &sub{Subscriber: s, subscribe: func(ctx context.Context, topic string, h message.Handler) error {
				return s.Subscribe(message.WithReady(ctx, func() {}), topic, h)
			}}
		},
	},
	{
		// Ready as soon as Subscribe is called, before it knows it can
		// consume.
		name:   "signals ready before consuming",
		fails:  []string{"subscribe signals ready once it consumes, and a message published right after arrives"},
		passes: []string{"cancelling an idle subscribe returns nil"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return &sub{Subscriber: s, subscribe: func(ctx context.Context, topic string, h message.Handler) error {
				message.SignalReady(ctx)
				return s.Subscribe(ctx, topic, h)
			}}
		},
	},
	{
		name:  "leaks a goroutine per subscriber",
		fails: []string{"no goroutines are left after close"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			go func() { select {} }()
			return s
		},
	},
}

// crossSuffix separates a group's name from the member's private group of
// the "dispatcher ignores keys across members" mutant.
const crossSuffix = "/member-"

// claimSet is shared by the members of one group under the "dispatcher
// ignores keys across members" mutant. Each member consumes every message
// (a private group of its own, so its dispatcher keeps key order inside
// the member) and handles those that no other member has claimed: the
// first member to reach a message claims it; the others skip it (settle it
// unhandled) and go on to the key's next message, which then runs while
// the claimed one still runs elsewhere. A failed call gives its claim up.
// A claimant takes up to half a millisecond to start the handler (as a
// delivery waits in a member's prefetch buffer), so a later message of the
// key, claimed by another member, may even start first.
type claimSet struct {
	mu     sync.Mutex
	claims map[string]bool // message ID -> done (false: running)
}

var claimSets sync.Map // group name -> *claimSet

func crossClaims(group string) *claimSet {
	c, _ := claimSets.LoadOrStore(group, &claimSet{claims: make(map[string]bool)})
	return c.(*claimSet)
}

func (c *claimSet) handler(h message.Handler) message.Handler {
	return func(ctx context.Context, m *message.Message) error {
		c.mu.Lock()
		if _, taken := c.claims[m.ID]; taken {
			c.mu.Unlock()
			return nil
		}
		c.claims[m.ID] = false
		c.mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		err := h(ctx, m)
		c.mu.Lock()
		if err != nil {
			delete(c.claims, m.ID)
		} else {
			c.claims[m.ID] = true
		}
		c.mu.Unlock()
		return err
	}
}

// harness builds the inmem harness, with the mutant applied when m is set.
func harness(t *testing.T, m *mutant) messagetest.Harness {
	b, err := inmem.NewBroker(inmem.WithPartitions(4), inmem.WithRetention(1<<20, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	timeout := 20 * time.Second
	if m != nil {
		timeout = 2 * time.Second // mutants that lose messages fail by timing out
	}
	// A simulated broker restart: while down is set, Publish fails (or,
	// for the lying mutant, pretends to succeed).
	var down, restarted atomic.Bool
	// The lying mutant also lies from the restart test's first publish
	// after the restart began (its message 101: the test publishes 100,
	// then waits for the restart), whether or not RestartBroker has set
	// down yet: on a loaded machine the test's publisher can otherwise
	// send all 200 later messages before down is set, and the lie is never
	// told.
	var perTopicMu sync.Mutex
	perTopic := map[string]int{}
	pastRestart := func(topic string) bool {
		if restarted.Load() {
			return false
		}
		perTopicMu.Lock()
		defer perTopicMu.Unlock()
		perTopic[topic]++
		return perTopic[topic] > 100
	}
	return messagetest.Harness{
		NewPublisher: func(testing.TB) (message.Publisher, error) {
			ip, err := inmem.NewPublisher(b)
			if err != nil {
				return nil, err
			}
			var p message.Publisher = ip
			if m != nil && m.pub != nil {
				p = m.pub(p)
			}
			inner := p
			lie := m != nil && m.lieDuringOutage
			return &pub{Publisher: inner, publish: func(ctx context.Context, topic string, msgs ...*message.Message) error {
				if topic != "" && len(msgs) > 0 && msgs[0] != nil {
					if lie && (down.Load() || pastRestart(topic)) {
						return nil
					}
					if down.Load() {
						return errors.New("simulated broker outage")
					}
				}
				return inner.Publish(ctx, topic, msgs...)
			}}, nil
		},
		RestartBroker: func(testing.TB) {
			down.Store(true)
			time.Sleep(100 * time.Millisecond) // the broker is down for a while
			down.Store(false)
			restarted.Store(true)
		},
		NewSubscriber: func(_ testing.TB, cfg messagetest.SubscriberConfig) (message.Subscriber, error) {
			if m != nil && m.group != nil {
				m.group(&cfg)
			}
			s, err := inmem.NewSubscriber(b,
				inmem.WithGroup(cfg.Group),
				inmem.WithConcurrency(cfg.Concurrency),
				inmem.WithRedeliveryBackoff(cfg.InitialBackoff, cfg.MaxBackoff),
				inmem.WithDrainTimeout(cfg.DrainTimeout))
			if err != nil || m == nil || m.sub == nil {
				return s, err
			}
			return m.sub(s, &cfg), nil
		},
		Features: messagetest.Features{
			NewGroupReadsHistory: true,
			NoKeyOrder:           m != nil && m.noKeyOrder,
			Restart:              true,
			InvalidTopics:        []string{"has space", "..", strings.Repeat("x", 250)},
			Timeout:              timeout,
		},
	}
}

// TestMutantChild runs the suite on inmem, broken as FERRY_MESSAGETEST_MUTANT
// says. It is the child process of TestSuiteCatchesMutants, and on its own
// (the variable unset) runs the suite on the healthy adapter.
func TestMutantChild(t *testing.T) {
	name := mutanttest.Child(mutantEnv)
	if name == "" {
		messagetest.Run(t, harness(t, nil))
		return
	}
	for i := range mutants {
		if mutants[i].name == name {
			messagetest.Run(t, harness(t, &mutants[i]))
			return
		}
	}
	t.Fatalf("unknown mutant %q", name)
}

func TestSuiteCatchesMutants(t *testing.T) {
	cases := make([]mutanttest.Case, len(mutants))
	for i, m := range mutants {
		cases[i] = mutanttest.Case{Name: m.name, Fails: m.fails, Passes: m.passes}
	}
	mutanttest.Check(t, mutantEnv, cases)
}

// adapterCall runs h, turning a panic into an error, as subscribers do.
func adapterCall(ctx context.Context, h message.Handler, m *message.Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = errors.New("panic")
		}
	}()
	return h(ctx, m)
}
