package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/message"
)

func newMemory(t *testing.T, opts ...dedupe.MemoryOption) *dedupe.MemoryStore {
	t.Helper()
	s, err := dedupe.NewMemoryStore(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMemoryStoreContract(t *testing.T) {
	dedupetest.RunStoreTests(t, func(t *testing.T, cfg dedupetest.Config) dedupe.Store {
		return newMemory(t, dedupe.WithClock(cfg.Now), dedupe.WithTTL(cfg.TTL))
	})
}

func TestMemoryStoreBounded(t *testing.T) {
	ctx := context.Background()
	const lease = time.Minute

	t.Run("evicts the oldest processed key first", func(t *testing.T) {
		s := newMemory(t, dedupe.WithMaxKeys(3))
		for _, k := range []string{"a", "b"} {
			if _, err := s.Claim(ctx, k, lease); err != nil {
				t.Fatal(err)
			}
			if err := s.Complete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Claim(ctx, "active", lease); err != nil {
			t.Fatal(err)
		}
		// Full: a, b processed, active claimed. A new key evicts a.
		res, err := s.Claim(ctx, "c", lease)
		if err != nil || res.Status != dedupe.Claimed {
			t.Fatalf("Claim(c) = %v, %v", res.Status, err)
		}
		if n := s.Len(); n != 3 {
			t.Fatalf("Len = %d, want 3", n)
		}
		if res, _ := s.Claim(ctx, "b", lease); res.Status != dedupe.Processed {
			t.Fatalf("b = %v, want still processed", res.Status)
		}
		if res, _ := s.Claim(ctx, "active", lease); res.Status != dedupe.InProgress {
			t.Fatalf("active claim = %v, want in progress (never evicted)", res.Status)
		}
		// a was evicted: claiming it evicts b, the next oldest.
		if res, _ := s.Claim(ctx, "a", lease); res.Status != dedupe.Claimed {
			t.Fatalf("a = %v, want claimed after eviction", res.Status)
		}
	})

	t.Run("full of live claims refuses new keys, never evicting a claim", func(t *testing.T) {
		s := newMemory(t, dedupe.WithMaxKeys(2))
		for _, k := range []string{"x", "y"} {
			if _, err := s.Claim(ctx, k, lease); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Claim(ctx, "z", lease); !errors.Is(err, dedupe.ErrStoreFull) {
			t.Fatalf("Claim when full = %v, want ErrStoreFull", err)
		}
		for _, k := range []string{"x", "y"} {
			if res, _ := s.Claim(ctx, k, lease); res.Status != dedupe.InProgress {
				t.Fatalf("%s = %v, want in progress", k, res.Status)
			}
		}
	})

	t.Run("expired claims are evicted when full", func(t *testing.T) {
		clk := dedupetest.NewClock(time.Unix(1e9, 0))
		s := newMemory(t, dedupe.WithMaxKeys(1), dedupe.WithClock(clk.Now))
		if _, err := s.Claim(ctx, "crashed", lease); err != nil {
			t.Fatal(err)
		}
		clk.Advance(lease + time.Second)
		if res, err := s.Claim(ctx, "next", lease); err != nil || res.Status != dedupe.Claimed {
			t.Fatalf("Claim(next) = %v, %v", res.Status, err)
		}
	})

	t.Run("expired processed keys are purged lazily", func(t *testing.T) {
		clk := dedupetest.NewClock(time.Unix(1e9, 0))
		s := newMemory(t, dedupe.WithTTL(time.Hour), dedupe.WithClock(clk.Now))
		for i := range 5000 {
			k := fmt.Sprint(i)
			if _, err := s.Claim(ctx, k, lease); err != nil {
				t.Fatal(err)
			}
			if err := s.Complete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.Len(); n != 5000 {
			t.Fatalf("Len = %d, want 5000", n)
		}
		clk.Advance(time.Hour)
		if _, err := s.Claim(ctx, "new", lease); err != nil {
			t.Fatal(err)
		}
		if n := s.Len(); n != 1 {
			t.Fatalf("Len after TTL = %d, want 1", n)
		}
	})

	t.Run("bounded under churn", func(t *testing.T) {
		s := newMemory(t, dedupe.WithMaxKeys(100))
		for i := range 10_000 {
			k := fmt.Sprint(i)
			res, err := s.Claim(ctx, k, lease)
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				if err := s.Complete(ctx, k); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Release(ctx, k, res.Token); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.Len(); n > 100 {
			t.Fatalf("Len = %d, want <= 100", n)
		}
	})

	t.Run("closed store returns ErrClosed", func(t *testing.T) {
		s := newMemory(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := s.Claim(ctx, "k", lease); !errors.Is(err, message.ErrClosed) {
			t.Fatalf("Claim after Close = %v, want ErrClosed", err)
		}
		if err := s.Complete(ctx, "k"); !errors.Is(err, message.ErrClosed) {
			t.Fatalf("Complete after Close = %v, want ErrClosed", err)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		for name, o := range map[string]dedupe.MemoryOption{
			"max keys 0": dedupe.WithMaxKeys(0),
			"ttl 0":      dedupe.WithTTL(0),
			"nil clock":  dedupe.WithClock(nil),
		} {
			if _, err := dedupe.NewMemoryStore(o); !errors.Is(err, message.ErrInvalidConfig) {
				t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
			}
		}
	})
}
