package message_test

import (
	"context"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

func TestWithReadyCallsOnce(t *testing.T) {
	n := 0
	ctx := message.WithReady(context.Background(), func() { n++ })
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	message.SignalReady(ctx)
	message.SignalReady(child) // derived: the same signal
	message.SignalReady(ctx)
	if n != 1 {
		t.Fatalf("ready function called %d times, want 1", n)
	}
}

func TestWithReadyNilAndAbsent(t *testing.T) {
	base := context.Background()
	if got := message.WithReady(base, nil); got != base {
		t.Errorf("WithReady(ctx, nil) = %v, want ctx unchanged", got)
	}
	message.SignalReady(base) // no function: nothing happens, no panic
}

func TestWithReadyInnerReplacesOuter(t *testing.T) {
	var outer, inner int
	ctx := message.WithReady(context.Background(), func() { outer++ })
	ctx = message.WithReady(ctx, func() { inner++ })
	message.SignalReady(ctx)
	if outer != 0 || inner != 1 {
		t.Fatalf("outer called %d, inner %d times; want 0 and 1", outer, inner)
	}
}
