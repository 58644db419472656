package dedupe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// NewBatch returns the idempotent consumer for batch handlers
// (message.BatchHandler), with New's store, options and guarantees kept
// per message:
//
//   - before the handler, each message's key (WithKey; default its ID) is
//     claimed on its own: a processed one is removed from the batch (and
//     settles; WithOnDuplicate is called), one claimed elsewhere
//     (ErrInProgress) or whose claim failed is named in the returned
//     *message.BatchError for redelivery, and the later messages of its
//     ordering key are left out of the handler's batch too (they are
//     redelivered after it, in order);
//   - the handler gets the claimed messages (and those with an empty
//     dedupe key), in batch order; with nothing left it is not called;
//   - after it, each message it succeeded on is completed (marked
//     processed), also one that follows a failed message of its key and
//     is redelivered with it (its redelivery then skips it instead of
//     running it twice); each failed one is released so that its
//     redelivery runs, and named in the returned *message.BatchError.
//
// The handler's result is read as the subscriber reads it
// (message.BatchResults): a plain error or a panic fails every message.
// Leases are renewed for the whole batch while the handler runs
// (WithLeaseRenewal). KeyFromContext has no key for a batch handler (a
// batch has many): use the KeyFunc on each message instead.
//
// Which middleware wraps which handler: New's message.Middleware wraps a
// message.Handler and NewBatch's message.BatchMiddleware a
// message.BatchHandler; the types do not convert into each other, so a
// per-message dedupe cannot silently dedupe whole batches under one key.
// Put it inside the batch retry middleware: message.ChainBatch(h,
// retryMW, dedupeMW).
func NewBatch(store Store, opts ...Option) (message.BatchMiddleware, error) {
	if isnil.Is(store) {
		return nil, invalidConfig("NewBatch: nil store (%T)", store)
	}
	c := config{key: KeyByID, lease: DefaultLease, renew: -1}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.renew < 0 {
		c.renew = c.lease / 3
	}
	if c.renew >= c.lease {
		return nil, invalidConfig("lease renewal every %v must be shorter than the lease %v", c.renew, c.lease)
	}
	m := &middleware{store: store, cfg: c}
	return m.wrapBatch, nil
}

// claim is one claimed message of a batch.
type claim struct {
	key   string
	token Token
}

func (m *middleware) wrapBatch(next message.BatchHandler) message.BatchHandler {
	if next == nil {
		return nil // Subscribe reports the nil handler
	}
	return func(ctx context.Context, msgs []*message.Message) error {
		var be message.BatchError
		run := make([]*message.Message, 0, len(msgs))
		idx := make([]int, 0, len(msgs))
		claims := make([]claim, 0, len(msgs)) // per run entry; key "" when not claimed
		var held map[string]bool              // ordering keys with a message left failed
		hold := func(msg *message.Message) {
			if msg.Key != "" {
				if held == nil {
					held = make(map[string]bool)
				}
				held[msg.Key] = true
			}
		}
		for i, msg := range msgs {
			if msg == nil {
				run, idx, claims = append(run, msg), append(idx, i), append(claims, claim{})
				continue
			}
			if msg.Key != "" && held[msg.Key] {
				continue
			}
			key := m.cfg.key(msg)
			if key == "" {
				run, idx, claims = append(run, msg), append(idx, i), append(claims, claim{})
				continue
			}
			res, err := m.store.Claim(ctx, key, m.cfg.lease)
			switch {
			case err != nil:
				be.Fail(i, storeError("claim", key, err))
				hold(msg)
			case res.Status == Claimed:
				run, idx, claims = append(run, msg), append(idx, i), append(claims, claim{key, res.Token})
			case res.Status == Processed:
				if m.cfg.onDuplicate != nil {
					m.cfg.onDuplicate(ctx, msg, key)
				}
			case res.Status == InProgress:
				be.Fail(i, fmt.Errorf("%w: key %q", ErrInProgress, key))
				hold(msg)
			default:
				be.Fail(i, fmt.Errorf("dedupe: claim %q: store returned invalid status %d", key, res.Status))
				hold(msg)
			}
		}
		if len(run) == 0 {
			return be.Err()
		}
		stop := m.renewBatch(claims)
		errs := message.BatchResults(adapter.CallBatch(ctx, next, run), len(run))
		stop()

		// The handler's ctx may have been cancelled at the drain timeout;
		// the outcomes must still reach the store.
		sctx := ctx
		if ctx.Err() != nil {
			sctx = context.WithoutCancel(ctx)
		}
		for j, c := range claims {
			var err error
			if errs != nil {
				err = errs[j]
			}
			if err != nil && errors.Is(err, ErrAlreadyProcessed) {
				err = nil // another delivery committed the work
				if c.key == "" {
					continue
				}
				c.key = "" // nothing to complete: the handler found it marked
			}
			switch {
			case err == nil && c.key != "":
				if cerr := m.store.Complete(sctx, c.key); cerr != nil {
					be.Fail(idx[j], storeError("complete", c.key, cerr))
				}
			case err == nil:
			case c.key != "":
				if rerr := m.store.Release(sctx, c.key, c.token); rerr != nil {
					err = errors.Join(err, storeError("release", c.key, rerr))
				}
				be.Fail(idx[j], err)
			default:
				be.Fail(idx[j], err)
			}
		}
		return be.Err()
	}
}

// renewBatch extends the leases of a batch's claims every renewal period
// until the returned function is called; that function waits for a
// renewal in flight.
func (m *middleware) renewBatch(claims []claim) (stop func()) {
	if m.cfg.renew <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	active := true
	var wg sync.WaitGroup
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(m.cfg.renew, func() {
		mu.Lock()
		if !active {
			mu.Unlock()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.renew)
		for _, c := range claims {
			if c.key != "" {
				_ = m.store.Extend(ctx, c.key, c.token, m.cfg.lease)
			}
		}
		cancel()
		mu.Lock()
		if active {
			t.Reset(m.cfg.renew)
		}
		mu.Unlock()
	})
	return func() {
		mu.Lock()
		active = false
		t.Stop()
		mu.Unlock()
		wg.Wait()
	}
}
