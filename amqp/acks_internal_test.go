package amqp

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/adapter/dispatch"
)

// TestAckCoalescer: Subscribe's acks are held until hold of them settled
// (or the flush timer fires, or flush is called), then sent as one
// multiple ack for the tags contiguous with what the channel acked before
// and one by one for the others; a tag whose message has not settled is
// never covered, and no tag is acked twice.
func TestAckCoalescer(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	acked := map[uint64]bool{}
	settled := map[uint64]bool{}
	fired := make(chan struct{}, 16)
	k := newAckCoalescer(16) // hold 4
	k.a.send = func(_ *consumer, tag uint64, multiple bool) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, fmt.Sprintf("%d%s", tag, map[bool]string{true: "m", false: ""}[multiple]))
		lo := tag
		if multiple {
			lo = 1
		}
		for x := lo; x <= tag; x++ {
			if acked[x] && (x == tag || !multiple) {
				t.Errorf("tag %d acked twice", x)
			}
			if !acked[x] && !settled[x] {
				t.Errorf("ack %d (multiple %v) covers unsettled tag %d", tag, multiple, x)
			}
			acked[x] = true
		}
		fired <- struct{}{}
	}
	c := &consumer{}
	settle := func(tags ...uint64) {
		for _, tag := range tags {
			mu.Lock()
			settled[tag] = true
			mu.Unlock()
			k.settle(&dispatch.Delivery{Ref: &ref{c: c, tag: tag}})
		}
	}
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := fmt.Sprint(sent)
		sent = nil
		for len(fired) > 0 {
			<-fired
		}
		return s
	}
	k.timer.Stop() // the test flushes by hand, but for the timer check below
	settle(2, 1, 3)
	if s := got(); s != "[]" {
		t.Fatalf("after 3 settles sent %s, want nothing held back yet", s)
	}
	settle(4) // hold reached
	if s := got(); s != "[4m]" {
		t.Fatalf("sent %s, want [4m]", s)
	}
	settle(6, 7) // 5 unsettled
	k.flush()
	if s := got(); s != "[6 7]" {
		t.Fatalf("with 5 unsettled sent %s, want [6 7]", s)
	}
	settle(5, 8)
	k.flush()
	if s := got(); s != "[8m]" { // covers 5 (6 and 7 were acked)
		t.Fatalf("sent %s, want [8m]", s)
	}
	// A held ack goes without a flush call: the timer sends it.
	got()
	settle(9)
	<-fired
	if s := got(); s != "[9m]" {
		t.Fatalf("timer sent %s, want [9m]", s)
	}
}
