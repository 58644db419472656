package dispatch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// A blocked handler holds up only its own delivery: the other workers take
// over the deliveries its worker had claimed but not started.
func TestBlockedHandlerDoesNotHoldClaimedDeliveries(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var others atomic.Int64
	allDone := make(chan struct{})
	const n = 400
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		if m.Key == "slow" {
			close(started)
			<-release
			return nil
		}
		if others.Add(1) == n {
			close(allDone)
		}
		return nil
	}, Config{Concurrency: 2}, nil)
	defer d.Shutdown()
	defer close(release)
	batch := []*Delivery{{Msg: msg("slow", 0)}}
	for i := range n {
		batch = append(batch, &Delivery{Msg: msg(fmt.Sprint("k", i%50), i)})
	}
	if _, err := d.SubmitBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	<-started
	<-allDone
}

// A delivery claimed behind a blocked handler does not wait for the ready
// list to drain: while the other worker keeps finding new work, it steals
// from the worker that started nothing for stallAfter.
func TestClaimedBehindBlockedHandlerIsStolenUnderLoad(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var fillers atomic.Int64
	fillersAtY := make(chan int64, 1)
	// Far more work than the stall threshold (stallAfter) lets the other
	// worker do before it steals y.
	const n = 200000
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		switch m.Key {
		case "slow":
			close(started)
			<-release
		case "y":
			fillersAtY <- fillers.Load()
		default:
			fillers.Add(1)
		}
		return nil
	}, Config{Concurrency: 2, MaxPending: n + 2}, nil)
	defer d.Shutdown()
	defer close(release)
	// slow and y head the ready list, so one claim takes both.
	batch := []*Delivery{{Msg: msg("slow", 0)}, {Msg: msg("y", 0)}}
	for i := range n {
		batch = append(batch, &Delivery{Msg: msg("", i)})
	}
	if _, err := d.SubmitBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	<-started
	if got := <-fillersAtY; got >= n/2 {
		t.Fatalf("y ran after %d of %d other deliveries: it waited behind the blocked handler", got, n)
	}
}

// Deliveries a worker claimed but has not started are dropped by Remove
// without waiting for the running handler, and abandoned by Shutdown.
func TestClaimedUnstartedDeliveriesAreRemovedAndAbandoned(t *testing.T) {
	for _, how := range []string{"remove", "shutdown"} {
		t.Run(how, func(t *testing.T) {
			started := make(chan struct{})
			finish := make(chan struct{})
			var mu sync.Mutex
			ran := map[string]bool{}
			d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
				mu.Lock()
				ran[string(m.Payload)] = true
				mu.Unlock()
				if string(m.Payload) == "0" {
					close(started)
					<-finish
				}
				return nil
			}, Config{Concurrency: 1}, nil)
			// One batch: the single worker claims all three at once.
			batch := []*Delivery{{Msg: msg("", 0), Ref: 1}, {Msg: msg("", 1), Ref: 1}, {Msg: msg("", 2), Ref: 2}}
			if _, err := d.SubmitBatch(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			<-started
			if how == "remove" {
				done := d.Remove(func(dl *Delivery) bool { return dl.Ref == 1 })
				select {
				case <-done:
					t.Fatal("Remove finished while a matching handler runs")
				default:
				}
				if p := d.Pending(); p != 2 {
					t.Fatalf("pending %d after Remove, want 2 (the running one and the other ref's)", p)
				}
				close(finish)
				<-done
				testenv.WaitFor(t, 10*time.Second, "the other ref's delivery", func() bool { mu.Lock(); defer mu.Unlock(); return ran["2"] })
				d.Shutdown()
			} else {
				stopped := shutdownInBackground(t, d)
				close(finish)
				<-stopped
			}
			mu.Lock()
			defer mu.Unlock()
			if ran["1"] {
				t.Fatalf("%s: a claimed delivery it should have dropped ran", how)
			}
			if how == "shutdown" && ran["2"] {
				t.Fatal("shutdown: a claimed delivery ran after Shutdown began")
			}
		})
	}
}
