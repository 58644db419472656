package adapter

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ferrymsg/ferry/message"
)

// Lifecycle is the part of a Subscriber that every adapter writes the same
// way: the closed flag, the running Subscribe calls, and a Close that
// cancels them and waits for them.
//
// Begin hands each call a context that ends when the caller's context ends
// or when Close is called. It watches for Close with context.AfterFunc, so
// no goroutine waits per call: Close cancels the calls' contexts directly.
// A call's context ended by Close has the cause message.ErrClosed
// (context.Cause), and Closed reports it too, so the call can return
// message.ErrClosed rather than nil.
//
// Typical use in an adapter:
//
//	func (s *Subscriber) Subscribe(ctx context.Context, topic string, h message.Handler) error {
//		rctx, end, err := s.life.Begin(ctx)
//		if err != nil {
//			return fmt.Errorf("mybroker: subscribe %q: %w", topic, err) // message.ErrClosed
//		}
//		defer end()
//		err = s.consume(rctx, topic, h) // drains when rctx ends
//		switch {
//		case s.life.Closed():
//			return fmt.Errorf("mybroker: subscribe %q: %w", topic, message.ErrClosed)
//		case ctx.Err() != nil:
//			return nil
//		}
//		return err
//	}
//
//	func (s *Subscriber) Close() error {
//		if s.life.Close() {
//			s.conn.Close() // once, after every Subscribe call returned
//		}
//		return nil
//	}
//
// Begin costs two small allocations; use it for long calls such as
// Subscribe, not per message. The zero value is ready to use. A Lifecycle
// must not be copied after first use.
type Lifecycle struct {
	mu      sync.Mutex
	closed  bool
	closing context.Context         // cancelled by Cancel; nil until first used
	cancel  context.CancelCauseFunc // cancels closing
	calls   sync.WaitGroup
}

// errEnded is the cause of a call's context cancelled by its own end.
var errEnded = errors.New("adapter: call ended")

func (l *Lifecycle) initLocked() {
	if l.closing == nil {
		l.closing, l.cancel = context.WithCancelCause(context.Background())
	}
}

// Begin registers a call. After Close it returns message.ErrClosed.
// Otherwise it returns a context derived from ctx (with its values) that
// is also cancelled, with the cause message.ErrClosed, when Close is
// called, and end, which the call must run when it returns (defer end());
// Close waits for it. end releases the context and is safe to call more
// than once. A nil ctx is refused with an error wrapping
// message.ErrInvalidConfig.
func (l *Lifecycle) Begin(ctx context.Context) (context.Context, func(), error) {
	if ctx == nil {
		// A programmer error by Go's convention, reported rather than
		// panicking inside the adapter (where a half-begun call would
		// also keep Close waiting).
		return nil, nil, fmt.Errorf("%w: nil context", message.ErrInvalidConfig)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, message.ErrClosed
	}
	l.initLocked()
	l.calls.Add(1)
	closing := l.closing
	l.mu.Unlock()

	rctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(closing, func() { cancel(message.ErrClosed) })
	var once sync.Once
	end := func() {
		once.Do(func() {
			stop()
			cancel(errEnded)
			l.calls.Done()
		})
	}
	return rctx, end, nil
}

// Closed reports whether Close (or Cancel) was called.
func (l *Lifecycle) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Cancel marks the Lifecycle closed, so that later Begin calls return
// message.ErrClosed, and cancels the context of every running call. It
// does not wait; it reports whether this was the first Cancel or Close.
// Use it with Wait when something must happen in between, such as
// stopping a reconnect loop that a call could be blocked in.
func (l *Lifecycle) Cancel() (first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	l.initLocked()
	l.cancel(message.ErrClosed)
	return true
}

// Wait waits until every call that Begin registered has run its end.
func (l *Lifecycle) Wait() { l.calls.Wait() }

// Close is Cancel followed by Wait: it cancels the running calls and waits
// for them to end. Every Close waits; it reports whether it was the first,
// so that the adapter releases its own resources (connections, clients)
// once.
func (l *Lifecycle) Close() (first bool) {
	first = l.Cancel()
	l.Wait()
	return first
}
