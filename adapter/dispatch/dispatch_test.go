package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fast = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}

func msg(key string, seq int) *message.Message {
	return &message.Message{Key: key, Payload: []byte(fmt.Sprint(seq))}
}

// waitFor polls cond until it holds or the deadline passes.

func TestKeyOrderAndConcurrencyLimit(t *testing.T) {
	const keys, perKey, conc = 64, 300, 16
	var running, maxRunning atomic.Int32
	var mu sync.Mutex
	active := map[string]bool{}
	next := map[string]int{}
	var violations []string
	var settled atomic.Int64
	h := func(ctx context.Context, m *message.Message) error {
		n := running.Add(1)
		for {
			old := maxRunning.Load()
			if n <= old || maxRunning.CompareAndSwap(old, n) {
				break
			}
		}
		mu.Lock()
		if active[m.Key] {
			violations = append(violations, "concurrent "+m.Key)
		}
		active[m.Key] = true
		var seq int
		fmt.Sscan(string(m.Payload), &seq)
		if seq != next[m.Key] {
			violations = append(violations, fmt.Sprintf("key %s: got %d want %d", m.Key, seq, next[m.Key]))
		}
		mu.Unlock()
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		}
		fail := rand.IntN(10) == 0 && m.Delivery.Attempt < 3
		mu.Lock()
		active[m.Key] = false
		if !fail {
			next[m.Key] = seq + 1
		}
		mu.Unlock()
		running.Add(-1)
		if fail {
			if rand.IntN(2) == 0 {
				panic("boom")
			}
			return errors.New("transient")
		}
		return nil
	}
	d := New(context.Background(), h, Config{Concurrency: conc, MaxPending: 256, Backoff: fast}, func(*Delivery) { settled.Add(1) })
	ctx := context.Background()
	for i := range perKey {
		for k := range keys {
			if err := d.Submit(ctx, &Delivery{Msg: msg(fmt.Sprint("k", k), i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.WaitFor(t, 10*time.Second, "all settled", func() bool { return settled.Load() == keys*perKey })
	d.Shutdown()
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("%d violations, first: %v", len(violations), violations[0])
	}
	if m := maxRunning.Load(); m > conc || m < 2 {
		t.Fatalf("max parallelism %d, want 2..%d", m, conc)
	}
	for k := range keys {
		if got := next[fmt.Sprint("k", k)]; got != perKey {
			t.Fatalf("key k%d handled %d, want %d", k, got, perKey)
		}
	}
}

func TestErrorBlocksOnlyItsKey(t *testing.T) {
	var mu sync.Mutex
	var order []string
	release := make(chan struct{})
	h := func(ctx context.Context, m *message.Message) error {
		mu.Lock()
		order = append(order, fmt.Sprintf("%s%s@%d", m.Key, m.Payload, m.Delivery.Attempt))
		mu.Unlock()
		if m.Key == "a" && string(m.Payload) == "0" {
			select {
			case <-release:
				return nil
			default:
				return errors.New("not yet")
			}
		}
		return nil
	}
	var settledB atomic.Int32
	var settledA atomic.Int32
	d := New(context.Background(), h, Config{Concurrency: 1, Backoff: fast}, func(dl *Delivery) {
		if dl.Msg.Key == "b" {
			settledB.Add(1)
		} else {
			settledA.Add(1)
		}
	})
	defer d.Shutdown()
	ctx := context.Background()
	for i := range 2 {
		_ = d.Submit(ctx, &Delivery{Msg: msg("a", i)})
	}
	for i := range 5 {
		_ = d.Submit(ctx, &Delivery{Msg: msg("b", i)})
	}
	testenv.WaitFor(t, 10*time.Second, "key b to flow while a is failing", func() bool { return settledB.Load() == 5 })
	if settledA.Load() != 0 {
		t.Fatalf("a settled while its first message kept failing")
	}
	close(release)
	testenv.WaitFor(t, 10*time.Second, "a settled", func() bool { return settledA.Load() == 2 })
	mu.Lock()
	defer mu.Unlock()
	// a1 must come after every attempt of a0 and attempts must count up.
	lastA0, firstA1, attempts := -1, -1, 0
	for i, s := range order {
		switch {
		case len(s) > 2 && s[:2] == "a0":
			lastA0 = i
			attempts++
			if want := fmt.Sprintf("a0@%d", attempts); s != want {
				t.Fatalf("got %s, want %s (order %v)", s, want, order)
			}
		case len(s) > 2 && s[:2] == "a1" && firstA1 < 0:
			firstA1 = i
		}
	}
	if attempts < 2 || firstA1 < lastA0 {
		t.Fatalf("a1 ran before a0 settled or a0 not retried: %v", order)
	}
}

func TestBackpressure(t *testing.T) {
	block := make(chan struct{})
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		<-block
		return nil
	}, Config{Concurrency: 2, MaxPending: 4}, nil)
	for i := range 4 {
		if err := d.Submit(context.Background(), &Delivery{Msg: msg("", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.Submit(ctx, &Delivery{Msg: msg("", 5)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit over MaxPending: got %v, want deadline exceeded", err)
	}
	close(block)
	if err := d.Submit(context.Background(), &Delivery{Msg: msg("", 6)}); err != nil {
		t.Fatal(err)
	}
	d.Shutdown()
}

func TestShutdownDrainsInFlightAndDropsQueued(t *testing.T) {
	started := make(chan struct{}, 2)
	finish := make(chan struct{})
	var ctxErrSeen atomic.Bool
	var settled atomic.Int32
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		started <- struct{}{}
		<-finish
		if ctx.Err() != nil {
			ctxErrSeen.Store(true)
		}
		return nil
	}, Config{Concurrency: 2, DrainTimeout: time.Minute}, func(*Delivery) { settled.Add(1) })
	for i := range 5 {
		_ = d.Submit(context.Background(), &Delivery{Msg: msg("", i)})
	}
	<-started
	<-started
	done := shutdownInBackground(t, d)
	close(finish)
	<-done
	if ctxErrSeen.Load() {
		t.Fatal("handler ctx cancelled before the drain timeout")
	}
	if got := settled.Load(); got != 2 {
		t.Fatalf("settled %d, want the 2 in-flight only", got)
	}
}

// shutdownInBackground starts d.Shutdown and returns once intake stopped;
// the channel is closed when Shutdown returns.
func shutdownInBackground(t *testing.T, d *Dispatcher) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() { d.Shutdown(); close(done) }()
	testenv.WaitFor(t, 10*time.Second, "intake stopped", func() bool {
		return errors.Is(d.Submit(context.Background(), &Delivery{Msg: msg("", 9)}), ErrStopped)
	})
	return done
}

func TestShutdownCancelsAfterDrainTimeout(t *testing.T) {
	started := make(chan struct{})
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}, Config{DrainTimeout: 10 * time.Millisecond}, func(*Delivery) { t.Error("cancelled handler settled") })
	_ = d.Submit(context.Background(), &Delivery{Msg: msg("", 0)})
	<-started
	d.Shutdown() // returns only because the ctx got cancelled
}

func TestRemoveDropsMatchingAndWaitsForInFlight(t *testing.T) {
	started := make(chan string, 10)
	finish := make(chan struct{})
	var mu sync.Mutex
	handled := map[string]int{}
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		started <- m.Key
		mu.Lock()
		handled[m.Key+string(m.Payload)]++
		mu.Unlock()
		if m.Key == "p1" {
			<-finish
			return errors.New("fails after revoke")
		}
		return nil
	}, Config{Concurrency: 1, Backoff: fast}, nil)
	defer d.Shutdown()
	for i := range 3 {
		_ = d.Submit(context.Background(), &Delivery{Msg: msg("p1", i), Ref: 1})
	}
	if k := <-started; k != "p1" {
		t.Fatalf("first started %s", k)
	}
	for i := range 3 {
		_ = d.Submit(context.Background(), &Delivery{Msg: msg("p2", i), Ref: 2})
	}
	done := d.Remove(func(dl *Delivery) bool { return dl.Ref == 1 })
	select {
	case <-done:
		t.Fatal("Remove finished while a matching handler runs")
	default:
	}
	close(finish)
	<-done
	testenv.WaitFor(t, 10*time.Second, "p2 handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled["p22"] == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if handled["p10"] != 1 || handled["p11"] != 0 || handled["p12"] != 0 {
		t.Fatalf("revoked deliveries ran or retried: %v", handled)
	}
	if d.Pending() != 0 {
		t.Fatalf("pending %d after everything settled or removed", d.Pending())
	}
}

func TestSubmitBatchAcceptsWhatFitsThenBlocks(t *testing.T) {
	block := make(chan struct{})
	var mu sync.Mutex
	var order []string
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		<-block
		mu.Lock()
		order = append(order, m.Key+string(m.Payload))
		mu.Unlock()
		return nil
	}, Config{Concurrency: 1, MaxPending: 3}, nil)
	batch := make([]*Delivery, 5)
	for i := range batch {
		batch[i] = &Delivery{Msg: msg("k", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	n, err := d.SubmitBatch(ctx, batch)
	if n != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SubmitBatch over MaxPending = %d, %v; want 3 and deadline exceeded", n, err)
	}
	close(block)
	if n, err := d.SubmitBatch(context.Background(), batch[3:]); n != 2 || err != nil {
		t.Fatalf("resubmitting the rest = %d, %v", n, err)
	}
	testenv.WaitFor(t, 10*time.Second, "all handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 5 })
	d.Shutdown()
	if n, err := d.SubmitBatch(context.Background(), batch[:1]); n != 0 || !errors.Is(err, ErrStopped) {
		t.Fatalf("after Shutdown = %d, %v", n, err)
	}
	for i, s := range order {
		if s != fmt.Sprint("k", i) {
			t.Fatalf("order %v", order)
		}
	}
}
