package dispatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// Drain removes the scope's queued work, cancels only the scope's running
// handlers once the drain timeout passed, and closes its channel once they
// returned.
func TestDrainCancelsOnlyTheScopesHandlersAfterTheTimeout(t *testing.T) {
	started := make(chan string, 4)
	ran := make(chan string, 16)
	release := make(chan struct{})
	var mu sync.Mutex
	cancelledAt := map[string]time.Duration{}
	begin := time.Now()
	h := func(ctx context.Context, m *message.Message) error {
		ran <- string(m.Payload)
		switch m.Key {
		case "a", "b":
			started <- m.Key
			select {
			case <-ctx.Done():
				mu.Lock()
				cancelledAt[m.Key] = time.Since(begin)
				mu.Unlock()
			case <-release:
			}
		}
		return nil
	}
	var settled sync.Map
	d := New(context.Background(), h, Config{Concurrency: 2, DrainTimeout: 50 * time.Millisecond}, func(dl *Delivery) {
		settled.Store(string(dl.Msg.Payload), true)
	})
	defer d.Shutdown()
	p0, p1 := d.NewScope(), d.NewScope()
	submit := func(s *Scope, key, payload string) {
		if err := d.Submit(context.Background(), &Delivery{Msg: &message.Message{Key: key, Payload: []byte(payload)}, Scope: s}); err != nil {
			t.Fatal(err)
		}
	}
	submit(p0, "a", "a1")
	submit(p1, "b", "b1")
	<-started
	<-started
	submit(p0, "a", "a2") // queued behind a1: dropped by the drain
	submit(p1, "b", "b2") // queued behind b1: stays

	begin = time.Now()
	done := d.Drain(p0)
	select {
	case <-done:
		t.Fatal("Drain's channel closed while a handler of the scope ran")
	case <-time.After(20 * time.Millisecond):
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the scope's handler was not cancelled after the drain timeout")
	}
	mu.Lock()
	at, ok := cancelledAt["a"]
	_, bCancelled := cancelledAt["b"]
	mu.Unlock()
	if !ok || at < 40*time.Millisecond {
		t.Fatalf("a1 cancelled %v (%v) after the drain began, want after the 50ms drain timeout", at, ok)
	}
	if bCancelled || p1.Context().Err() != nil {
		t.Fatal("draining one scope cancelled another's handler")
	}
	if p0.Context().Err() == nil {
		t.Fatal("the drained scope's context was not released")
	}
	close(release)
	testenv.WaitFor(t, 10*time.Second, "b2 settled", func() bool { _, ok := settled.Load("b2"); return ok })
	if _, ok := settled.Load("a2"); ok {
		t.Fatal("a2, queued in the drained scope, ran")
	}
	if _, ok := settled.Load("a1"); !ok {
		t.Fatal("a1 returned nil after its cancellation and was not settled")
	}
}

// A handler that returns within the drain timeout never sees its context
// cancelled, and an empty scope drains at once.
func TestDrainWithinTheTimeoutCancelsNothingEarly(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var sawCancel bool
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		close(started)
		<-release
		sawCancel = ctx.Err() != nil
		return nil
	}, ConfigFor(adapter.SubscriberConfig{DrainTimeout: time.Minute}), nil)
	defer d.Shutdown()
	s := d.NewScope()
	if err := d.Submit(context.Background(), &Delivery{Msg: &message.Message{Key: "k"}, Scope: s}); err != nil {
		t.Fatal(err)
	}
	<-started
	done := d.Drain(s)
	close(release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Drain's channel did not close after the handler returned")
	}
	if sawCancel {
		t.Fatal("the handler saw its context cancelled before the drain timeout")
	}
	select {
	case <-d.Drain(d.NewScope()):
	default:
		t.Fatal("draining an empty scope did not finish at once")
	}
}

func TestConfigForCarriesTheSubscriberConfig(t *testing.T) {
	sc := adapter.SubscriberConfig{Concurrency: 4, MaxPending: 10, InitialBackoff: time.Second, MaxBackoff: time.Minute, DrainTimeout: time.Hour}
	d := New(context.Background(), func(context.Context, *message.Message) error { return nil }, ConfigFor(sc), nil)
	defer d.Shutdown()
	c := d.Config()
	if c.Concurrency != 4 || c.MaxPending != 10 || c.Backoff != (Backoff{time.Second, time.Minute, 2}) || c.DrainTimeout != time.Hour {
		t.Fatalf("Config() = %+v", c)
	}
}
