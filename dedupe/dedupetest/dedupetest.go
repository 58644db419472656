package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
)

// Config is what the suite asks of a new store.
type Config struct {
	// Now is the store's clock. When the suite passes a Clock's Now it
	// moves time forward to expire leases and processed keys; when it
	// passes time.Now (the concurrency tests) it uses long leases.
	Now func() time.Time
	// TTL is how long processed keys are retained.
	TTL time.Duration
}

// NewStore returns a fresh, empty store configured as cfg says. The suite
// calls it once per subtest; the constructor registers its own cleanup.
type NewStore func(t *testing.T, cfg Config) dedupe.Store

// Clock is a manual clock for tests: Now returns a fixed time that only
// Advance moves. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const (
	lease = 10 * time.Second
	ttl   = time.Hour
)

// RunStoreTests runs the store contract against stores built by newStore.
func RunStoreTests(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	fresh := func(t *testing.T) (dedupe.Store, *Clock) {
		t.Helper()
		clk := NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
		return newStore(t, Config{Now: clk.Now, TTL: ttl}), clk
	}
	claim := func(t *testing.T, s dedupe.Store, key string, lease time.Duration, want dedupe.Status) dedupe.ClaimResult {
		t.Helper()
		res, err := s.Claim(ctx, key, lease)
		if err != nil {
			t.Fatalf("Claim(%q): %v", key, err)
		}
		if res.Status != want {
			t.Fatalf("Claim(%q) = %v, want %v", key, res.Status, want)
		}
		if want == dedupe.Claimed && res.Token == 0 {
			t.Fatalf("Claim(%q) claimed with a zero token", key)
		}
		return res
	}
	must := func(t *testing.T, err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	t.Run("new key is claimed, then in progress, then processed after complete", func(t *testing.T) {
		s, _ := fresh(t)
		claim(t, s, "k1", lease, dedupe.Claimed)
		claim(t, s, "k1", lease, dedupe.InProgress)
		must(t, s.Complete(ctx, "k1"), "Complete")
		claim(t, s, "k1", lease, dedupe.Processed)
		claim(t, s, "k2", lease, dedupe.Claimed)
	})

	t.Run("release frees the key for a redelivery", func(t *testing.T) {
		s, _ := fresh(t)
		first := claim(t, s, "k", lease, dedupe.Claimed)
		must(t, s.Release(ctx, "k", first.Token), "Release")
		second := claim(t, s, "k", lease, dedupe.Claimed)
		if second.Token == first.Token {
			t.Fatalf("second claim reused token %d", first.Token)
		}
		claim(t, s, "k", lease, dedupe.InProgress)
	})

	t.Run("expired lease frees the key (crashed consumer)", func(t *testing.T) {
		s, clk := fresh(t)
		claim(t, s, "k", lease, dedupe.Claimed)
		clk.Advance(lease - time.Second)
		claim(t, s, "k", lease, dedupe.InProgress)
		clk.Advance(2 * time.Second)
		claim(t, s, "k", lease, dedupe.Claimed)
		claim(t, s, "k", lease, dedupe.InProgress)
	})

	t.Run("stale release does not free a newer claim", func(t *testing.T) {
		s, clk := fresh(t)
		crashed := claim(t, s, "k", lease, dedupe.Claimed)
		clk.Advance(lease + time.Second)
		current := claim(t, s, "k", lease, dedupe.Claimed)
		must(t, s.Release(ctx, "k", crashed.Token), "stale Release")
		claim(t, s, "k", lease, dedupe.InProgress)
		must(t, s.Release(ctx, "k", current.Token), "Release")
		claim(t, s, "k", lease, dedupe.Claimed)
	})

	t.Run("release after complete keeps the key processed", func(t *testing.T) {
		s, _ := fresh(t)
		c := claim(t, s, "k", lease, dedupe.Claimed)
		must(t, s.Complete(ctx, "k"), "Complete")
		must(t, s.Release(ctx, "k", c.Token), "Release")
		claim(t, s, "k", lease, dedupe.Processed)
	})

	t.Run("processed key outlives its lease and expires after the TTL", func(t *testing.T) {
		s, clk := fresh(t)
		claim(t, s, "k", lease, dedupe.Claimed)
		must(t, s.Complete(ctx, "k"), "Complete")
		clk.Advance(lease * 3)
		claim(t, s, "k", lease, dedupe.Processed)
		clk.Advance(ttl - time.Minute)
		claim(t, s, "k", lease, dedupe.Processed)
		clk.Advance(2 * time.Minute)
		claim(t, s, "k", lease, dedupe.Claimed)
		claim(t, s, "k", lease, dedupe.InProgress)
	})

	t.Run("complete of an expired claim taken over still marks processed", func(t *testing.T) {
		s, clk := fresh(t)
		slow := claim(t, s, "k", lease, dedupe.Claimed)
		clk.Advance(lease + time.Second)
		claim(t, s, "k", lease, dedupe.Claimed)
		must(t, s.Complete(ctx, "k"), "Complete by the slow consumer")
		claim(t, s, "k", lease, dedupe.Processed)
		if err := s.Extend(ctx, "k", slow.Token, lease); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("Extend after complete = %v, want ErrLeaseLost", err)
		}
	})

	t.Run("complete without a claim and twice is idempotent", func(t *testing.T) {
		s, _ := fresh(t)
		must(t, s.Complete(ctx, "k"), "Complete")
		must(t, s.Complete(ctx, "k"), "second Complete")
		claim(t, s, "k", lease, dedupe.Processed)
	})

	t.Run("extend keeps a claim alive past its first lease", func(t *testing.T) {
		s, clk := fresh(t)
		c := claim(t, s, "k", lease, dedupe.Claimed)
		for range 3 {
			clk.Advance(lease / 2)
			must(t, s.Extend(ctx, "k", c.Token, lease), "Extend")
		}
		clk.Advance(lease - time.Second)
		claim(t, s, "k", lease, dedupe.InProgress)
		clk.Advance(2 * time.Second)
		claim(t, s, "k", lease, dedupe.Claimed)
		if err := s.Extend(ctx, "k", c.Token, lease); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("Extend by the expired claim = %v, want ErrLeaseLost", err)
		}
	})

	t.Run("extend of a released or unknown key reports lease lost", func(t *testing.T) {
		s, _ := fresh(t)
		c := claim(t, s, "k", lease, dedupe.Claimed)
		must(t, s.Release(ctx, "k", c.Token), "Release")
		if err := s.Extend(ctx, "k", c.Token, lease); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("Extend after release = %v, want ErrLeaseLost", err)
		}
		if err := s.Extend(ctx, "never-claimed", 42, lease); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("Extend of unknown key = %v, want ErrLeaseLost", err)
		}
	})

	t.Run("keys are exact strings", func(t *testing.T) {
		s, _ := fresh(t)
		keys := []string{"a", "A", "a ", "ключ-🔑", `it's "quoted"; DROP TABLE x;--`, strings.Repeat("x", 500), "01J0000000000000000000000000"}
		for _, k := range keys {
			claim(t, s, k, lease, dedupe.Claimed)
		}
		for _, k := range keys {
			must(t, s.Complete(ctx, k), "Complete")
		}
		for _, k := range keys {
			claim(t, s, k, lease, dedupe.Processed)
		}
		claim(t, s, "b", lease, dedupe.Claimed)
	})

	t.Run("bad input is rejected with an error", func(t *testing.T) {
		s, _ := fresh(t)
		if _, err := s.Claim(ctx, "", lease); !errors.Is(err, dedupe.ErrInvalidKey) {
			t.Errorf("Claim(\"\") = %v, want ErrInvalidKey", err)
		}
		if _, err := s.Claim(ctx, "k", 0); err == nil {
			t.Error("Claim with zero lease: no error")
		}
		if err := s.Complete(ctx, ""); !errors.Is(err, dedupe.ErrInvalidKey) {
			t.Errorf("Complete(\"\") = %v, want ErrInvalidKey", err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		s, _ := fresh(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Claim(cctx, "k", lease); !errors.Is(err, context.Canceled) {
			t.Fatalf("Claim with cancelled ctx = %v, want context.Canceled", err)
		}
		claim(t, s, "k", lease, dedupe.Claimed)
	})

	t.Run("concurrent claims of one key: exactly one wins", func(t *testing.T) {
		s := newStore(t, Config{Now: time.Now, TTL: ttl})
		const keys, racers = 8, 16
		for k := range keys {
			key := fmt.Sprintf("race-%d", k)
			var wins, inProgress atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, racers)
			for range racers {
				wg.Go(func() {
					<-start
					res, err := s.Claim(ctx, key, time.Hour)
					switch {
					case err != nil:
						errs <- err
					case res.Status == dedupe.Claimed:
						wins.Add(1)
					case res.Status == dedupe.InProgress:
						inProgress.Add(1)
					default:
						errs <- fmt.Errorf("unexpected status %v", res.Status)
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("key %s: %v", key, err)
			}
			if wins.Load() != 1 || inProgress.Load() != racers-1 {
				t.Fatalf("key %s: %d claimed, %d in progress; want 1 and %d", key, wins.Load(), inProgress.Load(), racers-1)
			}
		}
	})

	t.Run("concurrent consumers process every key exactly once", func(t *testing.T) {
		s := newStore(t, Config{Now: time.Now, TTL: ttl})
		const keys, consumers = 40, 8
		var processed [keys]atomic.Int32
		var failed [keys]atomic.Bool
		var wg sync.WaitGroup
		errs := make(chan error, consumers)
		for c := range consumers {
			wg.Go(func() {
				// Each consumer walks every key (map order is random)
				// until it has seen each one processed: like duplicates
				// redelivered to several instances at once.
				pending := make(map[int]bool, keys)
				for i := range keys {
					pending[i] = true
				}
				deadline := time.Now().Add(time.Minute)
				for len(pending) > 0 {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("consumer %d: %d keys never seen processed", c, len(pending))
						return
					}
					for i := range pending {
						key := fmt.Sprintf("once-%d", i)
						res, err := s.Claim(ctx, key, time.Hour)
						if err != nil {
							errs <- err
							return
						}
						switch res.Status {
						case dedupe.Claimed:
							// The first run of every third key fails
							// and is released, like a handler error.
							if i%3 == 0 && failed[i].CompareAndSwap(false, true) {
								if err := s.Release(ctx, key, res.Token); err != nil {
									errs <- err
									return
								}
								continue
							}
							processed[i].Add(1)
							if err := s.Complete(ctx, key); err != nil {
								errs <- err
								return
							}
							delete(pending, i)
						case dedupe.Processed:
							delete(pending, i)
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i := range processed {
			if n := processed[i].Load(); n != 1 {
				t.Errorf("key once-%d processed %d times, want 1", i, n)
			}
		}
	})
}
