package adapter_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLifecycleCloseCancelsRunningCallsAndWaits(t *testing.T) {
	var l adapter.Lifecycle
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	ctx, end, err := l.Begin(parent)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Value(key{}) != "v" {
		t.Fatal("the call's context lost the caller's values")
	}
	ended := make(chan struct{})
	go func() {
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), message.ErrClosed) {
			t.Errorf("cause %v, want ErrClosed", context.Cause(ctx))
		}
		time.Sleep(10 * time.Millisecond) // the call drains
		close(ended)
		end()
	}()
	if !l.Close() {
		t.Fatal("first Close did not report first")
	}
	select {
	case <-ended:
	default:
		t.Fatal("Close returned before the call ended")
	}
	if !l.Closed() {
		t.Fatal("Closed is false after Close")
	}
	if l.Close() {
		t.Fatal("second Close reported first")
	}
	if _, _, err := l.Begin(context.Background()); !errors.Is(err, message.ErrClosed) {
		t.Fatalf("Begin after Close: %v, want ErrClosed", err)
	}
}

func TestLifecycleCallerCancelLeavesOthersRunning(t *testing.T) {
	var l adapter.Lifecycle
	c1, cancel1 := context.WithCancel(context.Background())
	ctx1, end1, _ := l.Begin(c1)
	ctx2, end2, _ := l.Begin(context.Background())
	cancel1()
	<-ctx1.Done()
	if !errors.Is(context.Cause(ctx1), context.Canceled) || l.Closed() {
		t.Fatalf("cause %v, closed %v: want the caller's cancellation", context.Cause(ctx1), l.Closed())
	}
	if ctx2.Err() != nil {
		t.Fatal("one caller's cancellation ended another call")
	}
	end1()
	end1() // safe to repeat
	end2()
	if ctx2.Err() == nil {
		t.Fatal("end did not release the call's context")
	}
	l.Close()
}

// Begin starts no goroutine: Close reaches the calls through
// context.AfterFunc.
func TestLifecycleBeginStartsNoGoroutine(t *testing.T) {
	var l adapter.Lifecycle
	before := runtime.NumGoroutine()
	var ends []func()
	for range 100 {
		_, end, err := l.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, end)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after 100 Begin calls, %d before", n, before)
	}
	for _, end := range ends {
		end()
	}
	l.Close()
}

// TestLifecycleNilContext: a nil context is refused with an error, and a
// later Close does not wait for the call that never began.
func TestLifecycleNilContext(t *testing.T) {
	var l adapter.Lifecycle
	_, end, err := l.Begin(nil) //lint:ignore SA1012 a nil context on purpose
	if !errors.Is(err, message.ErrInvalidConfig) || end != nil {
		t.Fatalf("Begin(nil) = end %v, err %v; want no end func and ErrInvalidConfig", end != nil, err)
	}
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a call that Begin refused")
	}
}

// TestSubscribeNilContext: every adapter's Subscribe (here inmem's) reports
// a nil context instead of panicking, and Close still returns.
func TestSubscribeNilContext(t *testing.T) {
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	s, err := inmem.NewSubscriber(b)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1012 a nil context on purpose
	if err := s.Subscribe(nil, "t", func(context.Context, *message.Message) error { return nil }); !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("Subscribe(nil ctx) = %v, want ErrInvalidConfig", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
