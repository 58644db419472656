package delaytest_test

// These tests check that the suite can fail: each mutant breaks one
// promise of the delay tiers by wrapping the inmem adapter, and the
// subtests that guard it must fail on it. Each mutant runs in a child
// process of this test binary (internal/mutanttest).

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/delaytest"
	"github.com/ferrymsg/ferry/internal/mutanttest"
	"github.com/ferrymsg/ferry/message"
)

const mutantEnv = "FERRY_DELAYTEST_MUTANT"

// Subtests of delaytest.Run, as named there.
const (
	flow    = "tiers hand nothing out early and end in the DLT with the history"
	restart = "a restart while a message waits in a tier loses nothing"
)

type mutant struct {
	name  string
	fails []string
	// early: SubscribeTier hands tier messages out at once.
	early bool
	// drop: publishes to a tier topic report success and store nothing.
	drop bool
}

var mutants = []mutant{
	{name: "hands tier messages out before they are due", fails: []string{flow, restart}, early: true},
	{name: "loses the tier copies", fails: []string{flow, restart}, drop: true},
}

// earlySub consumes a tier like a topic, without waiting for the due time.
type earlySub struct {
	*inmem.Subscriber
	group string
}

func (s earlySub) SubscribeTier(ctx context.Context, topic, tierTopic string, d time.Duration, h message.Handler) error {
	return s.Subscribe(ctx, tierTopic, delay.Handler(func(ctx context.Context, msg *message.Message) error {
		if msg.Delivery.Tier == 0 {
			delay.Apply(msg)
		}
		return h(ctx, msg)
	}, s.group))
}

// dropPub loses what is published to a tier topic.
type dropPub struct{ message.Publisher }

func (p dropPub) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if strings.Contains(topic, "-retry-") {
		return nil
	}
	return p.Publisher.Publish(ctx, topic, msgs...)
}

var topics atomic.Int64

func harness(t *testing.T, m *mutant) delaytest.Harness {
	b, err := inmem.NewBroker(inmem.WithPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return delaytest.Harness{
		NewPublisher: func(t testing.TB) message.Publisher {
			p, err := inmem.NewPublisher(b)
			if err != nil {
				t.Fatal(err)
			}
			if m != nil && m.drop {
				return dropPub{p}
			}
			return p
		},
		NewSubscriber: func(t testing.TB, group string) message.Subscriber {
			s, err := inmem.NewSubscriber(b, inmem.WithGroup(group), inmem.WithConcurrency(4),
				inmem.WithRedeliveryBackoff(5*time.Millisecond, 50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if m != nil && m.early {
				return earlySub{s, group}
			}
			return s
		},
		Topic:     func(testing.TB) string { return fmt.Sprintf("mutant-%d", topics.Add(1)) },
		Positions: true,
		TierTopic: true,
		Wait:      3 * time.Second,
	}
}

func TestMutantChild(t *testing.T) {
	name := mutanttest.Child(mutantEnv)
	if name == "" {
		delaytest.Run(t, harness(t, nil))
		return
	}
	for i := range mutants {
		if mutants[i].name == name {
			delaytest.Run(t, harness(t, &mutants[i]))
			return
		}
	}
	t.Fatalf("unknown mutant %q", name)
}

func TestSuiteCatchesMutants(t *testing.T) {
	cases := make([]mutanttest.Case, len(mutants))
	for i, m := range mutants {
		cases[i] = mutanttest.Case{Name: m.name, Fails: m.fails}
	}
	mutanttest.Check(t, mutantEnv, cases)
}
