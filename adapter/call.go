package adapter

import (
	"context"
	"runtime/debug"

	"github.com/ferrymsg/ferry/message"
)

// Call runs h and turns a panic into a *message.PanicError carrying the
// panic value and the stack, so a panicking handler is treated as a failed
// one (its message is redelivered) instead of crashing the process.
// Subscribers (adapter/dispatch calls it for every delivery) and
// middleware that must observe a handler's outcome (retry, dedupe) use it.
func Call(ctx context.Context, h message.Handler, msg *message.Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &message.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(ctx, msg)
}
