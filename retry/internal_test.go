package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// TestMaxElapsedTime drives the middleware with a fake clock, so the
// elapsed-time limit is checked without waiting.
func TestMaxElapsedTime(t *testing.T) {
	r, err := newRetrier(WithMaxAttempts(0), WithMaxElapsedTime(35*time.Millisecond), WithConstantBackoff(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	var slept time.Duration
	r.now = func() time.Time { return now }
	calls := 0
	h := r.wrap(func(context.Context, *message.Message) error { calls++; return errors.New("x") })
	msg := &message.Message{ID: "a", Delivery: message.Delivery{Topic: "t", Attempt: 1}}
	for {
		err = h(context.Background(), msg)
		d, ok := message.RedeliveryDelay(err)
		if !ok {
			break
		}
		// The dispatcher waits d, then redelivers.
		now = now.Add(d)
		slept += d
		msg.Delivery.Attempt++
	}
	if err == nil {
		t.Fatal("no dead-letter publisher: the error must be returned")
	}
	// Attempts at 0, 10, 20, 30 ms; the next one (40 ms) would exceed 35 ms.
	if calls != 4 || slept != 30*time.Millisecond {
		t.Fatalf("calls = %d, waited = %v; want 4 calls, 30ms", calls, slept)
	}
}

func TestPendingIsBounded(t *testing.T) {
	r, err := newRetrier()
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxPending + 10 {
		r.putPending(&message.Message{ID: string(rune(i)), Delivery: message.Delivery{Offset: -1}}, &failure{})
	}
	if len(r.pending) != maxPending {
		t.Fatalf("pending has %d entries, want %d", len(r.pending), maxPending)
	}
	// A message nothing identifies is not remembered.
	r.pending = nil
	r.putPending(&message.Message{Delivery: message.Delivery{Offset: -1}}, &failure{})
	if len(r.pending) != 0 {
		t.Fatal("anonymous message remembered")
	}
}
