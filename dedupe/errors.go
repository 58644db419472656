package dedupe

import (
	"errors"
	"fmt"

	"github.com/ferrymsg/ferry/message"
)

var (
	// ErrInProgress is returned by the middleware, without running the
	// handler, when another delivery of the same key holds a live claim
	// (two consumers after a rebalance, a duplicate publish handled in
	// parallel). The subscriber redelivers the message after its backoff;
	// by then the key is processed (the redelivery is skipped) or free
	// again because the first run failed (the redelivery runs it).
	// It wraps message.ErrRedeliver, so the retry middleware passes it back
	// for redelivery instead of retrying or dead-lettering the message.
	ErrInProgress = fmt.Errorf("dedupe: key in progress by another delivery: %w", message.ErrRedeliver)

	// ErrLeaseLost is returned by Store.Extend when the claim no longer
	// holds the key.
	ErrLeaseLost = errors.New("dedupe: lease lost")

	// ErrStoreFull is returned by the memory store's Claim when every slot
	// holds a live claim and nothing can be evicted. The middleware
	// returns it, so the message is redelivered later, never dropped.
	ErrStoreFull = errors.New("dedupe: store full of active claims")

	// ErrInvalidKey is returned by stores for an empty key.
	ErrInvalidKey = errors.New("dedupe: invalid key")
)

// ErrClosed is returned by a closed store; it is message.ErrClosed.
var ErrClosed = message.ErrClosed

func invalidConfig(format string, args ...any) error {
	return fmt.Errorf("dedupe: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}
