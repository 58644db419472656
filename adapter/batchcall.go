package adapter

import (
	"context"
	"runtime/debug"

	"github.com/ferrymsg/ferry/message"
)

// CallBatch runs a batch handler as Call runs a handler: a panic becomes a
// *message.PanicError (so the whole batch is redelivered) instead of
// crashing the process.
func CallBatch(ctx context.Context, h message.BatchHandler, msgs []*message.Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &message.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(ctx, msgs)
}
