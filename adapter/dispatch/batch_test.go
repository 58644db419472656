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

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

func seqOf(m *message.Message) int {
	var n int
	fmt.Sscan(string(m.Payload), &n)
	return n
}

// TestBatchKeyOrderPartialFailures runs batches at concurrency 8 with
// random per-message failures (and some whole-batch errors and panics)
// and checks: no two running batches share a key; a key's messages in a
// batch are consecutive from its first unsettled one; every message
// settles exactly once, in publish order per key; limits hold.
func TestBatchKeyOrderPartialFailures(t *testing.T) {
	const keys, perKey, conc, maxN, maxBytes = 40, 200, 8, 50, 120
	var mu sync.Mutex
	active := map[string]bool{}
	next := map[string]int{} // next seq to settle, per key
	var violations []string
	var settledN atomic.Int64
	var batches, partial atomic.Int64
	bad := func(f string, a ...any) {
		if len(violations) < 20 {
			violations = append(violations, fmt.Sprintf(f, a...))
		}
	}
	h := func(ctx context.Context, msgs []*message.Message) error {
		batches.Add(1)
		mu.Lock()
		if len(msgs) == 0 || len(msgs) > maxN {
			bad("batch of %d", len(msgs))
		}
		size := 0
		for _, m := range msgs {
			size += len(m.Payload)
		}
		if len(msgs) > 1 && size > maxBytes {
			bad("batch of %d bytes", size)
		}
		want := map[string]int{}
		for _, m := range msgs {
			if _, ok := want[m.Key]; !ok {
				if active[m.Key] {
					bad("key %s in two running batches", m.Key)
				}
				active[m.Key] = true
				want[m.Key] = next[m.Key]
			}
			if s := seqOf(m); s != want[m.Key] {
				bad("key %s: got %d want %d", m.Key, s, want[m.Key])
			}
			want[m.Key]++
		}
		mu.Unlock()
		defer func() {
			mu.Lock()
			for _, m := range msgs {
				delete(active, m.Key)
			}
			mu.Unlock()
		}()
		switch r := rand.IntN(20); {
		case r == 0:
			return errors.New("whole batch")
		case r == 1:
			panic("batch panic")
		}
		var be message.BatchError
		for i := range msgs {
			if rand.IntN(8) == 0 {
				be.Fail(i, errors.New("boom"))
			}
		}
		if be.Err() != nil {
			partial.Add(1)
		}
		return be.Err()
	}
	settled := func(dl *Delivery) {
		mu.Lock()
		defer mu.Unlock()
		m := dl.Msg
		if s := seqOf(m); s != next[m.Key] {
			bad("settled key %s seq %d, want %d", m.Key, s, next[m.Key])
		}
		next[m.Key]++
		settledN.Add(1)
	}
	d := New(context.Background(), nil, Config{Concurrency: conc, Backoff: fast, Batch: &Batch{Handler: h,
		Limits: message.BatchConfig{MaxMessages: maxN, MaxBytes: maxBytes, MaxWait: time.Millisecond}}}, settled)
	defer d.Shutdown()
	for i := range perKey {
		for k := range keys {
			if err := d.Submit(context.Background(), &Delivery{Msg: msg(fmt.Sprint("k", k), i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.WaitFor(t, 30*time.Second, "every message settled once", func() bool { return settledN.Load() == keys*perKey })
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("violations: %v", violations)
	}
	if partial.Load() == 0 {
		t.Fatal("no batch failed partially: the test proves nothing")
	}
	if n := batches.Load(); n >= keys*perKey {
		t.Fatalf("%d batches for %d messages: not batching", n, keys*perKey)
	}
	for k := range keys {
		if n := next[fmt.Sprint("k", k)]; n != perKey {
			t.Fatalf("key k%d settled %d, want %d", k, n, perKey)
		}
	}
}

// TestBatchPartialFailureRedeliversKeyTail: with one failed message, the
// others of other keys settle, the failed one and the later ones of its
// key come back together, the failed one with Attempt 2, the carried ones
// with Attempt 1.
func TestBatchPartialFailureRedeliversKeyTail(t *testing.T) {
	var mu sync.Mutex
	var calls [][]string
	var settledIDs []string
	done := make(chan struct{})
	h := func(ctx context.Context, msgs []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, m := range msgs {
			got = append(got, fmt.Sprintf("%s%s@%d", m.Key, m.Payload, m.Delivery.Attempt))
		}
		calls = append(calls, got)
		if len(calls) == 1 {
			var be message.BatchError
			for i, m := range msgs {
				if m.Key == "a" && string(m.Payload) == "1" {
					be.Fail(i, errors.New("a1 failed"))
				}
			}
			return be.Err()
		}
		return nil
	}
	settled := func(dl *Delivery) {
		mu.Lock()
		defer mu.Unlock()
		settledIDs = append(settledIDs, dl.Msg.Key+string(dl.Msg.Payload))
		if len(settledIDs) == 6 {
			close(done)
		}
	}
	d := New(context.Background(), nil, Config{Concurrency: 1, Backoff: fast, Batch: &Batch{Handler: h,
		Limits: message.BatchConfig{MaxMessages: 6, MaxWait: time.Millisecond}}}, settled)
	defer d.Shutdown()
	var dls []*Delivery
	for _, m := range []*message.Message{msg("a", 0), msg("b", 0), msg("a", 1), msg("b", 1), msg("a", 2), msg("c", 0)} {
		dls = append(dls, &Delivery{Msg: m})
	}
	if _, err := d.SubmitBatch(context.Background(), dls); err != nil {
		t.Fatal(err)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("calls %v, want 2", calls)
	}
	if got, want := fmt.Sprint(calls[0]), "[a0@1 a1@1 a2@1 b0@1 b1@1 c0@1]"; got != want {
		t.Fatalf("first batch %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(calls[1]), "[a1@2 a2@1]"; got != want {
		t.Fatalf("redelivered %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(settledIDs), "[a0 b0 b1 c0 a1 a2]"; got != want {
		t.Fatalf("settled %s, want %s", got, want)
	}
}

// TestBatchLimits: a batch never passes its count or byte limit, a message
// over the byte limit is a batch of one, and a lone message is handed
// over without more arriving (MaxWait).
func TestBatchLimits(t *testing.T) {
	var mu sync.Mutex
	var sizes [][2]int
	got := make(chan int, 100)
	h := func(ctx context.Context, msgs []*message.Message) error {
		n := 0
		for _, m := range msgs {
			n += len(m.Payload)
		}
		mu.Lock()
		sizes = append(sizes, [2]int{len(msgs), n})
		mu.Unlock()
		got <- len(msgs)
		return nil
	}
	d := New(context.Background(), nil, Config{Concurrency: 2, Batch: &Batch{Handler: h,
		Limits: message.BatchConfig{MaxMessages: 4, MaxBytes: 10, MaxWait: 5 * time.Millisecond}}}, nil)
	defer d.Shutdown()
	// A lone message comes through on its own.
	if err := d.Submit(context.Background(), &Delivery{Msg: &message.Message{Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 1 {
		t.Fatalf("lone message: batch of %d", n)
	}
	var dls []*Delivery
	total := 0
	for i := range 50 {
		p := make([]byte, i%4)
		if i == 7 {
			p = make([]byte, 25) // over MaxBytes: a batch of its own
		}
		dls = append(dls, &Delivery{Msg: &message.Message{Key: fmt.Sprint(i % 3), Payload: p}})
		total++
	}
	if _, err := d.SubmitBatch(context.Background(), dls); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < total; {
		n += <-got
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range sizes {
		if s[0] < 1 || s[0] > 4 || (s[0] > 1 && s[1] > 10) {
			t.Fatalf("batch of %d messages and %d bytes passes the limits (4, 10): %v", s[0], s[1], sizes)
		}
	}
}

// TestBatchShutdownMidBatch: Shutdown waits for a running batch, which
// settles; what was not started is not settled.
func TestBatchShutdownMidBatch(t *testing.T) {
	// Buffered: the handler's non-blocking send must not be lost when the
	// test has not reached its receive yet.
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var settledN atomic.Int64
	h := func(ctx context.Context, msgs []*message.Message) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	d := New(context.Background(), nil, Config{Concurrency: 1, Batch: &Batch{Handler: h,
		Limits: message.BatchConfig{MaxMessages: 3}}}, func(*Delivery) { settledN.Add(1) })
	var dls []*Delivery
	for i := range 9 {
		dls = append(dls, &Delivery{Msg: msg("k", i)})
	}
	if _, err := d.SubmitBatch(context.Background(), dls); err != nil {
		t.Fatal(err)
	}
	<-started
	stopped := make(chan struct{})
	go func() { d.Shutdown(); close(stopped) }()
	testenv.WaitFor(t, 10*time.Second, "Shutdown to begin", d.stopped.Load)
	close(release)
	<-stopped
	if n := settledN.Load(); n != 3 {
		t.Fatalf("settled %d, want the running batch's 3", n)
	}
}
