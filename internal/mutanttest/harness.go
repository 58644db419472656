package mutanttest

import (
	"context"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// InmemHarness returns a messagetest.Harness on a fresh inmem broker (4
// partitions, history kept), closed when t ends. When publish is set it
// changes a clone of every published message; when wrap is set it wraps
// every handler. A harness for a mutant (mutant true) waits 2 s at most,
// since mutants that lose messages fail by timing out; otherwise 20 s.
func InmemHarness(t *testing.T, mutant bool, publish func(*message.Message), wrap func(message.Handler) message.Handler) messagetest.Harness {
	t.Helper()
	b, err := inmem.NewBroker(inmem.WithPartitions(4), inmem.WithRetention(1<<20, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	timeout := 20 * time.Second
	if mutant {
		timeout = 2 * time.Second
	}
	return messagetest.Harness{
		NewPublisher: func(testing.TB) (message.Publisher, error) {
			ip, err := inmem.NewPublisher(b)
			if err != nil {
				return nil, err
			}
			if publish != nil {
				return mutatedPublisher{Publisher: ip, change: publish}, nil
			}
			return ip, nil
		},
		NewSubscriber: func(_ testing.TB, cfg messagetest.SubscriberConfig) (message.Subscriber, error) {
			s, err := inmem.NewSubscriber(b,
				inmem.WithGroup(cfg.Group),
				inmem.WithConcurrency(cfg.Concurrency),
				inmem.WithRedeliveryBackoff(cfg.InitialBackoff, cfg.MaxBackoff),
				inmem.WithDrainTimeout(cfg.DrainTimeout))
			if err != nil {
				return nil, err
			}
			if wrap != nil {
				return mutatedSubscriber{Subscriber: s, wrap: wrap}, nil
			}
			return s, nil
		},
		Features: messagetest.Features{Timeout: timeout},
	}
}

type mutatedPublisher struct {
	message.Publisher
	change func(m *message.Message)
}

func (p mutatedPublisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	cs := make([]*message.Message, len(msgs))
	for i, m := range msgs {
		if m != nil {
			cs[i] = m.Clone()
			p.change(cs[i])
		}
	}
	return p.Publisher.Publish(ctx, topic, cs...)
}

type mutatedSubscriber struct {
	message.Subscriber
	wrap func(message.Handler) message.Handler
}

func (s mutatedSubscriber) Subscribe(ctx context.Context, topic string, h message.Handler) error {
	if h != nil {
		h = s.wrap(h)
	}
	return s.Subscriber.Subscribe(ctx, topic, h)
}

// Inmem is a mutant of a suite that runs on the inmem harness (codectest,
// retrytest): its Case and the bug it plants.
type Inmem struct {
	Case
	// Publish changes each message a publisher sends (a clone of it).
	Publish func(m *message.Message)
	// Handle wraps the handler of every Subscribe.
	Handle func(h message.Handler) message.Handler
}

// RunInmemChild is a suite's TestMutantChild: it runs suite on the inmem
// harness, broken as the mutant named by env says, or healthy when env is
// unset (so the test on its own checks the healthy adapter). An unknown
// name fails t.
func RunInmemChild(t *testing.T, env string, mutants []Inmem, suite func(*testing.T, messagetest.Harness)) {
	name := Child(env)
	if name == "" {
		suite(t, InmemHarness(t, false, nil, nil))
		return
	}
	for _, m := range mutants {
		if m.Name == name {
			suite(t, InmemHarness(t, true, m.Publish, m.Handle))
			return
		}
	}
	t.Fatalf("unknown mutant %q", name)
}

// CheckInmem is Check on the cases of mutants.
func CheckInmem(t *testing.T, env string, mutants []Inmem) {
	t.Helper()
	cases := make([]Case, len(mutants))
	for i, m := range mutants {
		cases[i] = m.Case
	}
	Check(t, env, cases)
}
