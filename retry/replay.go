package retry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// DefaultReplayIdleTimeout is the default of WithIdleTimeout.
const DefaultReplayIdleTimeout = 10 * time.Second

// ReplayOption configures Replay.
type ReplayOption struct {
	apply func(*replayConfig) error
}

type replayConfig struct {
	filter func(*message.Message, DeadLetterInfo) bool
	limit  int
	idle   time.Duration
}

// ReplayStats counts what Replay did.
type ReplayStats struct {
	// Replayed is the number of messages republished to their original
	// topic (and settled on the dead-letter topic).
	Replayed int
	// Skipped is the number of messages the filter rejected (settled on
	// the dead-letter topic without being republished).
	Skipped int
}

// WithFilter replays only the messages for which fn returns true; the
// others are settled on the dead-letter topic for the replay's group and
// counted as Skipped. fn is called concurrently when the subscriber's
// concurrency is above 1. Default: every message is replayed.
func WithFilter(fn func(msg *message.Message, info DeadLetterInfo) bool) ReplayOption {
	return ReplayOption{func(c *replayConfig) error {
		if fn == nil {
			return invalid("WithFilter: filter is nil")
		}
		c.filter = fn
		return nil
	}}
}

// WithLimit stops Replay after n messages were republished; 0 means no
// limit. Messages delivered to the handler after the limit is reached are
// not settled (they stay on the dead-letter topic). Default: 0.
func WithLimit(n int) ReplayOption {
	return ReplayOption{func(c *replayConfig) error {
		if n < 0 {
			return invalid("WithLimit(%d): must be 0 (no limit) or more", n)
		}
		c.limit = n
		return nil
	}}
}

// WithIdleTimeout stops Replay when no message has been handled for d
// (counted from the start, and then from the end of the last handler call;
// never while a handler runs); 0 disables it, so Replay runs until the
// limit or ctx ends it. Choose d longer than the subscriber needs to join
// its group (a few seconds on Kafka). Default: DefaultReplayIdleTimeout
// (10 s).
func WithIdleTimeout(d time.Duration) ReplayOption {
	return ReplayOption{func(c *replayConfig) error {
		if d < 0 {
			return invalid("WithIdleTimeout(%v): must be 0 (disabled) or more", d)
		}
		c.idle = d
		return nil
	}}
}

// errLimitReached is returned by the replay handler for messages delivered
// after the limit, so that they are not settled.
var errLimitReached = errors.New("retry: replay limit reached; message left on the dead-letter topic")

// Replay consumes the dead-letter topic dltTopic with sub and republishes
// each message with pub to its original topic (HeaderOriginalTopic or
// HeaderSpringOriginalTopic), with the same ID, Key, Payload, Time and
// headers minus the dead-letter ones (StripHeaders).
//
// A dead-letter message is settled only after its republish succeeded, so
// nothing is lost: a message whose republish fails stays on the
// dead-letter topic. The subscriber's group decides where the replay
// starts (a Kafka group that already replayed continues after the last
// settled message); a concurrency of 1 keeps the dead-letter order.
//
// Replay returns when, whichever comes first:
//   - WithLimit messages were republished (returns nil);
//   - no message arrived for WithIdleTimeout (returns nil);
//   - a message cannot be replayed: headers that ParseDeadLetter rejects
//     or a failed republish (returns that error; the message is left
//     unsettled on the dead-letter topic);
//   - ctx ends (returns ctx.Err());
//   - sub.Subscribe returns by itself (returns its error).
//
// In every case the stats say what was done. Replay does not close sub or
// pub.
func Replay(ctx context.Context, sub message.Subscriber, pub message.Publisher, dltTopic string, opts ...ReplayOption) (ReplayStats, error) {
	cfg := replayConfig{idle: DefaultReplayIdleTimeout}
	for _, o := range opts {
		if o.apply == nil {
			return ReplayStats{}, invalid("zero ReplayOption value")
		}
		if err := o.apply(&cfg); err != nil {
			return ReplayStats{}, err
		}
	}
	if isnil.Is(sub) || isnil.Is(pub) {
		return ReplayStats{}, invalid("Replay: subscriber (%T) and publisher (%T) must not be nil", sub, pub)
	}
	if err := adapter.ValidateTopic(dltTopic); err != nil {
		return ReplayStats{}, fmt.Errorf("retry: replay: %w", err)
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu       sync.Mutex
		stats    ReplayStats
		failErr  error // first parse or publish failure
		reserved atomic.Int64
		inflight atomic.Int64
		activity = make(chan struct{}, 1)
		finished atomic.Bool // the limit or the idle timeout ended the replay
	)
	fail := func(err error) {
		mu.Lock()
		if failErr == nil {
			failErr = err
		}
		mu.Unlock()
		cancel()
	}
	handler := func(hctx context.Context, msg *message.Message) error {
		inflight.Add(1)
		defer func() {
			inflight.Add(-1)
			select {
			case activity <- struct{}{}:
			default:
			}
		}()
		if rctx.Err() != nil {
			return rctx.Err() // stopping: leave the message unsettled
		}
		info, err := ParseDeadLetter(msg)
		if err != nil {
			err = fmt.Errorf("retry: replay message %q from %q: %w", msg.ID, dltTopic, err)
			fail(err)
			return err
		}
		if cfg.filter != nil && !cfg.filter(msg, info) {
			mu.Lock()
			stats.Skipped++
			mu.Unlock()
			return nil
		}
		if cfg.limit > 0 && reserved.Add(1) > int64(cfg.limit) {
			reserved.Add(-1)
			finished.Store(true)
			cancel()
			return errLimitReached
		}
		c := msg.Clone()
		StripHeaders(c.Headers)
		StripTierHeaders(c.Headers)
		if err := pub.Publish(hctx, info.Topic, c); err != nil {
			reserved.Add(-1)
			err = fmt.Errorf("retry: replay message %q from %q to %q: %w", msg.ID, dltTopic, info.Topic, err)
			fail(err)
			return err
		}
		mu.Lock()
		stats.Replayed++
		done := cfg.limit > 0 && stats.Replayed >= cfg.limit
		mu.Unlock()
		if done {
			finished.Store(true)
			cancel()
		}
		return nil
	}

	watchDone := make(chan struct{})
	var wg sync.WaitGroup
	if cfg.idle > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(cfg.idle)
			defer t.Stop()
			for {
				select {
				case <-watchDone:
					return
				case <-activity:
					t.Reset(cfg.idle)
				case <-t.C:
					if inflight.Load() > 0 {
						t.Reset(cfg.idle)
						continue
					}
					finished.Store(true)
					cancel()
					return
				}
			}
		}()
	}

	subErr := sub.Subscribe(rctx, dltTopic, handler)
	close(watchDone)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	switch {
	case failErr != nil:
		return stats, failErr
	case ctx.Err() != nil && !finished.Load():
		return stats, ctx.Err()
	case subErr != nil:
		return stats, subErr
	}
	return stats, nil
}
