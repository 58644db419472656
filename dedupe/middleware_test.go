package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMW(t *testing.T, s dedupe.Store, opts ...dedupe.Option) message.Middleware {
	t.Helper()
	mw, err := dedupe.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

func msgWithID(id string) *message.Message {
	return &message.Message{ID: id, Delivery: message.Delivery{Topic: "t", Attempt: 1, Partition: -1, Offset: -1}}
}

func TestMiddleware(t *testing.T) {
	ctx := context.Background()

	t.Run("same ID delivered three times is handled once", func(t *testing.T) {
		var runs atomic.Int32
		h := message.Chain(func(context.Context, *message.Message) error { runs.Add(1); return nil }, newMW(t, newMemory(t)))
		for i := range 3 {
			if err := h(ctx, msgWithID("id-1")); err != nil {
				t.Fatalf("delivery %d: %v", i+1, err)
			}
		}
		if err := h(ctx, msgWithID("id-2")); err != nil {
			t.Fatal(err)
		}
		if n := runs.Load(); n != 2 {
			t.Fatalf("handler ran %d times, want 2 (id-1 once, id-2 once)", n)
		}
	})

	t.Run("skipped duplicates are reported to WithOnDuplicate", func(t *testing.T) {
		var skipped []string
		mw, err := dedupe.New(newMemory(t), dedupe.WithOnDuplicate(func(_ context.Context, m *message.Message, key string) {
			skipped = append(skipped, m.ID+"="+key)
		}))
		if err != nil {
			t.Fatal(err)
		}
		h := mw(func(context.Context, *message.Message) error { return nil })
		for _, id := range []string{"a", "b", "a", "a"} {
			if err := h(ctx, msgWithID(id)); err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(skipped) != "[a=a a=a]" {
			t.Fatalf("duplicates reported %v, want the two repeats of a", skipped)
		}
		if _, err := dedupe.New(newMemory(t), dedupe.WithOnDuplicate(nil)); !errors.Is(err, message.ErrInvalidConfig) {
			t.Fatalf("WithOnDuplicate(nil): %v", err)
		}
	})

	t.Run("a failed first run is handled once it succeeds", func(t *testing.T) {
		boom := errors.New("boom")
		var runs, ok atomic.Int32
		h := message.Chain(func(context.Context, *message.Message) error {
			if runs.Add(1) == 1 {
				return boom
			}
			ok.Add(1)
			return nil
		}, newMW(t, newMemory(t)))
		if err := h(ctx, msgWithID("x")); !errors.Is(err, boom) {
			t.Fatalf("first delivery = %v, want boom", err)
		}
		for range 3 {
			if err := h(ctx, msgWithID("x")); err != nil {
				t.Fatal(err)
			}
		}
		if runs.Load() != 2 || ok.Load() != 1 {
			t.Fatalf("runs %d, successes %d; want 2 and 1", runs.Load(), ok.Load())
		}
	})

	t.Run("a panicking run releases the key", func(t *testing.T) {
		var runs atomic.Int32
		h := message.Chain(func(context.Context, *message.Message) error {
			if runs.Add(1) == 1 {
				panic("kaput")
			}
			return nil
		}, newMW(t, newMemory(t)))
		var pe *message.PanicError
		if err := h(ctx, msgWithID("p")); !errors.As(err, &pe) {
			t.Fatalf("panicking delivery = %v, want *message.PanicError", err)
		}
		if err := h(ctx, msgWithID("p")); err != nil {
			t.Fatal(err)
		}
		if err := h(ctx, msgWithID("p")); err != nil {
			t.Fatal(err)
		}
		if n := runs.Load(); n != 2 {
			t.Fatalf("runs = %d, want 2", n)
		}
	})

	t.Run("concurrent duplicates: one runs, the other gets ErrInProgress", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		var runs atomic.Int32
		h := message.Chain(func(context.Context, *message.Message) error {
			runs.Add(1)
			close(entered)
			<-release
			return nil
		}, newMW(t, newMemory(t)))
		first := make(chan error, 1)
		go func() { first <- h(ctx, msgWithID("dup")) }()
		<-entered
		if err := h(ctx, msgWithID("dup")); !errors.Is(err, dedupe.ErrInProgress) || !errors.Is(err, message.ErrRedeliver) {
			t.Fatalf("concurrent duplicate = %v, want ErrInProgress wrapping message.ErrRedeliver", err)
		}
		close(release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		// The redelivery of the loser is now skipped.
		if err := h(ctx, msgWithID("dup")); err != nil {
			t.Fatalf("redelivered duplicate = %v, want nil (skipped)", err)
		}
		if n := runs.Load(); n != 1 {
			t.Fatalf("runs = %d, want 1", n)
		}
	})

	t.Run("loser of a failed first run runs on redelivery", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		var runs, ok atomic.Int32
		h := message.Chain(func(context.Context, *message.Message) error {
			if runs.Add(1) == 1 {
				close(entered)
				<-release
				return errors.New("first run fails")
			}
			ok.Add(1)
			return nil
		}, newMW(t, newMemory(t)))
		first := make(chan error, 1)
		go func() { first <- h(ctx, msgWithID("dup")) }()
		<-entered
		if err := h(ctx, msgWithID("dup")); !errors.Is(err, dedupe.ErrInProgress) || !errors.Is(err, message.ErrRedeliver) {
			t.Fatalf("concurrent duplicate = %v, want ErrInProgress wrapping message.ErrRedeliver", err)
		}
		close(release)
		if err := <-first; err == nil {
			t.Fatal("first run: want its error")
		}
		if err := h(ctx, msgWithID("dup")); err != nil {
			t.Fatal(err)
		}
		if ok.Load() != 1 {
			t.Fatalf("successes = %d, want 1", ok.Load())
		}
	})

	t.Run("many goroutines delivering one ID run it once", func(t *testing.T) {
		var runs atomic.Int32
		h := message.Chain(func(context.Context, *message.Message) error { runs.Add(1); return nil }, newMW(t, newMemory(t)))
		var wg sync.WaitGroup
		var nils, inProgress atomic.Int32
		for range 64 {
			wg.Go(func() {
				for {
					err := h(ctx, msgWithID("hot"))
					if err == nil {
						nils.Add(1)
						return
					}
					if !errors.Is(err, dedupe.ErrInProgress) {
						t.Error(err)
						return
					}
					inProgress.Add(1)
				}
			})
		}
		wg.Wait()
		if runs.Load() != 1 || nils.Load() != 64 {
			t.Fatalf("runs %d, nil results %d; want 1 and 64", runs.Load(), nils.Load())
		}
	})

	t.Run("handler reporting ErrAlreadyProcessed settles the message", func(t *testing.T) {
		h := message.Chain(func(context.Context, *message.Message) error {
			return errors.Join(errors.New("rolled back"), dedupe.ErrAlreadyProcessed)
		}, newMW(t, newMemory(t)))
		if err := h(ctx, msgWithID("a")); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})

	t.Run("empty key passes through undeduplicated", func(t *testing.T) {
		var runs atomic.Int32
		s := newMemory(t)
		h := message.Chain(func(context.Context, *message.Message) error { runs.Add(1); return nil },
			newMW(t, s, dedupe.WithKey(dedupe.KeyByHeader("idem"))))
		for range 2 {
			if err := h(ctx, msgWithID("same")); err != nil {
				t.Fatal(err)
			}
		}
		m := msgWithID("other")
		m.Headers = map[string]string{"idem": "k1"}
		for range 2 {
			if err := h(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if n := runs.Load(); n != 3 {
			t.Fatalf("runs = %d, want 3 (2 without the header, 1 with)", n)
		}
		if n := s.Len(); n != 1 {
			t.Fatalf("store holds %d keys, want 1", n)
		}
	})

	t.Run("store errors redeliver and never settle unprocessed", func(t *testing.T) {
		fail := errors.New("db down")
		for _, op := range []string{"claim", "complete", "release"} {
			t.Run(op, func(t *testing.T) {
				fs := &faultyStore{Store: newMemory(t), op: op, err: fail}
				var runs atomic.Int32
				handlerErr := errors.New("handler failed")
				h := message.Chain(func(context.Context, *message.Message) error {
					runs.Add(1)
					if op == "release" {
						return handlerErr
					}
					return nil
				}, newMW(t, fs))
				err := h(ctx, msgWithID("m"))
				if !errors.Is(err, fail) {
					t.Fatalf("err = %v, want the store error", err)
				}
				if op == "release" && !errors.Is(err, handlerErr) {
					t.Fatalf("err = %v, want the handler error too", err)
				}
				if want := int32(1); op == "claim" {
					if runs.Load() != 0 {
						t.Fatal("handler ran without a claim")
					}
				} else if runs.Load() != want {
					t.Fatalf("runs = %d, want 1", runs.Load())
				}
			})
		}
	})

	t.Run("outcome is recorded after the handler's ctx was cancelled", func(t *testing.T) {
		fs := &faultyStore{Store: newMemory(t), checkCtx: true}
		hctx, cancel := context.WithCancel(ctx)
		h := message.Chain(func(context.Context, *message.Message) error { cancel(); return nil }, newMW(t, fs))
		if err := h(hctx, msgWithID("c")); err != nil {
			t.Fatal(err)
		}
		if res, _ := fs.Claim(ctx, "c", time.Minute); res.Status != dedupe.Processed {
			t.Fatalf("status = %v, want processed", res.Status)
		}
	})

	t.Run("lease is renewed while a long handler runs", func(t *testing.T) {
		fs := &faultyStore{Store: newMemory(t)}
		const lease = time.Second
		dup := make(chan error, 1)
		h := message.Chain(func(ctx context.Context, m *message.Message) error {
			// Wait for more renewals than fit in one lease.
			deadline := time.Now().Add(30 * time.Second)
			for fs.extends.Load() < 15 {
				if time.Now().After(deadline) {
					return errors.New("lease never renewed")
				}
				time.Sleep(10 * time.Millisecond)
			}
			_, err := fs.Store.Claim(ctx, m.ID, lease)
			res, _ := fs.Store.Claim(ctx, m.ID, lease)
			if err == nil && res.Status != dedupe.InProgress {
				err = errors.New("duplicate claim got " + res.Status.String() + " while handler runs")
			}
			dup <- err
			return nil
		}, newMW(t, fs, dedupe.WithLease(lease), dedupe.WithLeaseRenewal(lease/10)))
		if err := h(ctx, msgWithID("long")); err != nil {
			t.Fatal(err)
		}
		if err := <-dup; err != nil {
			t.Fatal(err)
		}
		n := fs.extends.Load()
		if res, _ := fs.Claim(ctx, "long", lease); res.Status != dedupe.Processed {
			t.Fatalf("status = %v, want processed", res.Status)
		}
		if fs.extends.Load() != n {
			t.Fatal("lease renewed after the handler returned")
		}
	})

	t.Run("nil handler stays nil", func(t *testing.T) {
		if h := newMW(t, newMemory(t))(nil); h != nil {
			t.Fatal("wrapping a nil handler returned a non-nil handler")
		}
	})

	t.Run("bad configuration", func(t *testing.T) {
		s := newMemory(t)
		cases := map[string]struct {
			s    dedupe.Store
			opts []dedupe.Option
		}{
			"nil store":            {nil, nil},
			"nil key func":         {s, []dedupe.Option{dedupe.WithKey(nil)}},
			"zero lease":           {s, []dedupe.Option{dedupe.WithLease(0)}},
			"negative renewal":     {s, []dedupe.Option{dedupe.WithLeaseRenewal(-time.Second)}},
			"renewal beyond lease": {s, []dedupe.Option{dedupe.WithLease(time.Second), dedupe.WithLeaseRenewal(time.Second)}},
		}
		for name, c := range cases {
			if _, err := dedupe.New(c.s, c.opts...); !errors.Is(err, message.ErrInvalidConfig) {
				t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
			}
		}
	})
}

func TestKeyFuncs(t *testing.T) {
	m := &message.Message{ID: "id1", Headers: map[string]string{"h": "v"},
		Delivery: message.Delivery{Group: "g", Topic: "orders", Partition: 3, Offset: 42}}
	if got := dedupe.KeyByID(m); got != "id1" {
		t.Errorf("KeyByID = %q", got)
	}
	if got := dedupe.KeyByPosition(m); got != "g/orders/3/42" {
		t.Errorf("KeyByPosition = %q", got)
	}
	if got := dedupe.KeyByHeader("h")(m); got != "v" {
		t.Errorf("KeyByHeader = %q", got)
	}
	if got := dedupe.KeyByHeader("missing")(m); got != "" {
		t.Errorf("KeyByHeader(missing) = %q", got)
	}
	m.Delivery.Partition, m.Delivery.Offset = -1, -1
	if got := dedupe.KeyByPosition(m); got != "id:id1" {
		t.Errorf("KeyByPosition without a position = %q, want the ID fallback", got)
	}
	m.ID = ""
	if got := dedupe.KeyByPosition(m); got != "" {
		t.Errorf("KeyByPosition without position or ID = %q, want empty", got)
	}
}

// faultyStore wraps a Store, fails one operation, counts Extends and
// optionally rejects cancelled contexts like a network store would.
type faultyStore struct {
	dedupe.Store
	op       string
	err      error
	checkCtx bool
	extends  atomic.Int32
}

func (f *faultyStore) Claim(ctx context.Context, key string, lease time.Duration) (dedupe.ClaimResult, error) {
	if f.op == "claim" {
		return dedupe.ClaimResult{}, f.err
	}
	return f.Store.Claim(ctx, key, lease)
}

func (f *faultyStore) Extend(ctx context.Context, key string, token dedupe.Token, lease time.Duration) error {
	f.extends.Add(1)
	return f.Store.Extend(ctx, key, token, lease)
}

func (f *faultyStore) Complete(ctx context.Context, key string) error {
	if f.op == "complete" {
		return f.err
	}
	if f.checkCtx && ctx.Err() != nil {
		return ctx.Err()
	}
	return f.Store.Complete(ctx, key)
}

func (f *faultyStore) Release(ctx context.Context, key string, token dedupe.Token) error {
	if f.op == "release" {
		return f.err
	}
	if f.checkCtx && ctx.Err() != nil {
		return ctx.Err()
	}
	return f.Store.Release(ctx, key, token)
}
