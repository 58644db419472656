package retry_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

func TestWithDelayedRetryRejectsBadInput(t *testing.T) {
	var typedNil *inmem.Publisher
	pub := &fakePublisher{}
	for _, c := range []struct {
		name string
		opt  retry.Option
		want string
	}{
		{"nil publisher", retry.WithDelayedRetry(nil, time.Second), "publisher is nil"},
		{"typed nil publisher", retry.WithDelayedRetry(typedNil, time.Second), "publisher is nil"},
		{"no delays", retry.WithDelayedRetry(pub), "no delays"},
		{"zero delay", retry.WithDelayedRetry(pub, time.Second, 0), "delay 1 is 0s"},
		{"sub-millisecond delay", retry.WithDelayedRetry(pub, time.Microsecond), "at least 1ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := retry.NewPolicy(c.opt)
			if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewPolicy: %v, want ErrInvalidConfig naming %q", err, c.want)
			}
		})
	}
}

func TestTierTopicNames(t *testing.T) {
	pub := &fakePublisher{}
	p, err := retry.NewPolicy(retry.WithDelayedRetry(pub, 10*time.Second, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(p.TierTopics("orders")), "[orders-retry-10000 orders-retry-60000]"; got != want {
		t.Errorf("TierTopics = %s, want %s (Spring's <topic>-retry-<delay ms>)", got, want)
	}
	// Repeated delays: Spring's per-attempt form, by index.
	p, err = retry.NewPolicy(retry.WithDelayedRetry(pub, time.Second, time.Second, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(p.TierTopics("orders")), "[orders-retry-0 orders-retry-1 orders-retry-2]"; got != want {
		t.Errorf("TierTopics = %s, want %s", got, want)
	}
	if q, err := retry.NewPolicy(); err != nil || q.TierTopics("orders") != nil || q.Delays() != nil {
		t.Errorf("without WithDelayedRetry: TierTopics %v, Delays %v, err %v; want nil", q.TierTopics("orders"), q.Delays(), err)
	}
}

func TestBigIntMatchesJava(t *testing.T) {
	// BigInteger.valueOf(v).toByteArray() in Java.
	for _, c := range []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0}},
		{1, []byte{1}},
		{127, []byte{0x7f}},
		{128, []byte{0, 0x80}},
		{255, []byte{0, 0xff}},
		{256, []byte{1, 0}},
		{-1, []byte{0xff}},
		{-128, []byte{0x80}},
		{-129, []byte{0xff, 0x7f}},
		{1700000000000, []byte{0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00}},
		{1 << 62, []byte{0x40, 0, 0, 0, 0, 0, 0, 0}},
	} {
		got := delay.AppendBigInt(nil, c.v)
		if string(got) != string(c.want) {
			t.Errorf("AppendBigInt(%d) = % x, want % x", c.v, got, c.want)
		}
		back, ok := delay.ParseBigInt(string(got))
		if !ok || back != c.v {
			t.Errorf("ParseBigInt(% x) = %d %v, want %d", got, back, ok, c.v)
		}
	}
}

// A subscriber that is not a delay.Subscriber cannot consume tiers.
type plainSubscriber struct{ message.Subscriber }

func TestPolicySubscribeNeedsTierSubscriber(t *testing.T) {
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	sub, _ := inmem.NewSubscriber(b)
	p, err := retry.NewPolicy(retry.WithDelayedRetry(pub, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := func(context.Context, *message.Message) error { return nil }
	err = p.Subscribe(context.Background(), plainSubscriber{sub}, "orders", h)
	if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "delay.Subscriber") {
		t.Errorf("Subscribe with a plain subscriber: %v, want ErrInvalidConfig naming delay.Subscriber", err)
	}
	var nilSub *inmem.Subscriber
	if err := p.Subscribe(context.Background(), nilSub, "orders", h); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("Subscribe with a typed-nil subscriber: %v, want ErrInvalidConfig", err)
	}
	if err := p.Subscribe(context.Background(), sub, "orders", nil); !errors.Is(err, message.ErrNilHandler) {
		t.Errorf("Subscribe with a nil handler: %v, want ErrNilHandler", err)
	}
	var nilCtx context.Context
	if err := p.Subscribe(nilCtx, sub, "orders", h); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("Subscribe with a nil ctx: %v, want ErrInvalidConfig", err)
	}
}

// tierRun subscribes p on a fresh inmem broker and returns the publisher,
// the recorded tier copies and a stop function.
type tierCopies struct {
	mu   sync.Mutex
	msgs []*message.Message
	ch   chan struct{}
}

// recordingPublisher records what is published to tier topics.
type recordingPublisher struct {
	message.Publisher
	tiers *tierCopies
}

func (p *recordingPublisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if strings.Contains(topic, retry.TierSuffix) {
		p.tiers.mu.Lock()
		for _, m := range msgs {
			c := m.Clone()
			p.tiers.msgs = append(p.tiers.msgs, c)
		}
		p.tiers.mu.Unlock()
		select {
		case p.tiers.ch <- struct{}{}:
		default:
		}
	}
	return p.Publisher.Publish(ctx, topic, msgs...)
}

func TestSpringTierHeaders(t *testing.T) {
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	base, _ := inmem.NewPublisher(b)
	tiers := &tierCopies{ch: make(chan struct{}, 1)}
	pub := &recordingPublisher{Publisher: base, tiers: tiers}
	p, err := retry.NewPolicy(retry.WithMaxAttempts(2), retry.WithConstantBackoff(0), retry.SpringHeaders(),
		retry.WithDelayedRetry(pub, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := message.Chain(func(context.Context, *message.Message) error { return errors.New("down") }, p.Middleware())
	go func() { done <- p.Subscribe(ctx, sub, "orders", h) }()
	sent := time.UnixMilli(1700000000123)
	if err := base.Publish(ctx, "orders", &message.Message{ID: "o-1", Key: "k", Time: sent}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tiers.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no tier copy published")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	tiers.mu.Lock()
	c := tiers.msgs[0]
	tiers.mu.Unlock()
	h2 := c.Headers
	if got := h2[retry.HeaderSpringRetryAttempts]; len(got) != 4 || binary.BigEndian.Uint32([]byte(got)) != 3 {
		t.Errorf("%s = % x, want the 4-byte big-endian 3 (the next attempt)", retry.HeaderSpringRetryAttempts, got)
	}
	if ms, ok := delay.ParseBigInt(h2[retry.HeaderSpringRetryOriginalTimestamp]); !ok || ms != sent.UnixMilli() {
		t.Errorf("%s = % x (%d), want BigInteger bytes of %d", retry.HeaderSpringRetryOriginalTimestamp, h2[retry.HeaderSpringRetryOriginalTimestamp], ms, sent.UnixMilli())
	}
	due, ok := delay.ParseTime(h2[retry.HeaderTierDue])
	if !ok {
		t.Fatalf("%s = %q: not a time", retry.HeaderTierDue, h2[retry.HeaderTierDue])
	}
	if ms, ok := delay.ParseBigInt(h2[retry.HeaderSpringRetryBackoffTimestamp]); !ok || ms != due.UnixMilli() {
		t.Errorf("%s = %d, want the due time %d", retry.HeaderSpringRetryBackoffTimestamp, ms, due.UnixMilli())
	}
	want := map[string]string{
		retry.HeaderTierTopic:    "orders",
		retry.HeaderTierGroup:    "billing",
		retry.HeaderTier:         "1",
		retry.HeaderTierAttempts: "2",
		retry.HeaderTierError:    "down",
	}
	for k, v := range want {
		if h2[k] != v {
			t.Errorf("%s = %q, want %q", k, h2[k], v)
		}
	}
	if _, err := strconv.Atoi(h2[retry.HeaderTierOriginalOffset]); err != nil {
		t.Errorf("%s = %q, want the inmem offset", retry.HeaderTierOriginalOffset, h2[retry.HeaderTierOriginalOffset])
	}
}

// A permanent error skips the tiers: straight to the DLT.
func TestPermanentSkipsTiers(t *testing.T) {
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	base, _ := inmem.NewPublisher(b)
	rec := &fakePublisher{}
	p, err := retry.NewPolicy(retry.WithDelayedRetry(base, time.Hour), retry.WithDeadLetter(rec))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := inmem.NewSubscriber(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	handled := make(chan struct{}, 4)
	h := message.Chain(func(context.Context, *message.Message) error {
		handled <- struct{}{}
		return retry.Permanent(errors.New("bad input"))
	}, p.Middleware())
	go func() { done <- p.Subscribe(ctx, sub, "orders", h) }()
	if err := base.Publish(ctx, "orders", &message.Message{ID: "o-1"}); err != nil {
		t.Fatal(err)
	}
	<-handled
	deadline := time.Now().Add(10 * time.Second)
	for {
		topics, _ := rec.published()
		if len(topics) > 0 {
			if topics[0] != "orders.DLT" {
				t.Errorf("dead-lettered to %q, want orders.DLT", topics[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not dead-lettered")
		}
		time.Sleep(5 * time.Millisecond) // polling an external condition with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if n := len(handled); n != 0 {
		t.Errorf("handler called %d more times, want once in all", n)
	}
}
