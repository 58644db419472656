package message

import (
	"context"
	"sync"
)

// readyKey is the context key of the value WithReady stores.
type readyKey struct{}

// readySignal calls fn at most once.
type readySignal struct {
	once sync.Once
	fn   func()
}

// WithReady returns a copy of ctx carrying fn, to be passed to
// Subscriber.Subscribe: every ferry adapter calls fn once, from the
// Subscribe call, when the subscription is consuming, so that a message
// published after fn returned is delivered to the subscriber's group
// without a warm-up message. What "consuming" means per adapter is in each
// adapter's package documentation:
//
//   - inmem: the member joined its group (the group's offsets exist).
//   - kafka: the client joined the group and received its first partition
//     assignment, which may be empty when the group has more members than
//     the topic has partitions.
//   - amqp: the exchange, the group's queues and bindings are declared and
//     the member announced itself to the group (its first shard claim was
//     tried).
//
// fn runs on the adapter's goroutine before it starts fetching, so it must
// return quickly (close a channel, signal a WaitGroup). It is not called
// when Subscribe fails before it is ready (bad input, Close, a cancelled
// ctx, a broker that cannot be reached). A nil fn is ignored. A later
// WithReady on a derived context replaces the earlier one for Subscribe
// calls given the derived context. The once is per WithReady value: give
// each Subscribe call its own, or only the first to be ready calls fn.
func WithReady(ctx context.Context, fn func()) context.Context {
	if fn == nil {
		return ctx
	}
	return context.WithValue(ctx, readyKey{}, &readySignal{fn: fn})
}

// SignalReady calls the function WithReady put into ctx, once: later calls
// with ctx (or a context derived from it) do nothing, as does a ctx
// without one. Adapters call it from Subscribe; applications use WithReady.
func SignalReady(ctx context.Context) {
	if r, ok := ctx.Value(readyKey{}).(*readySignal); ok {
		r.once.Do(r.fn)
	}
}
