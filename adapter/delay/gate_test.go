package delay

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gateLog records a gate's submissions, pauses and resumes in order.
type gateLog struct {
	mu     sync.Mutex
	events []string
	late   []string // submissions made before their due time
	ch     chan struct{}
}

func newGate(t *testing.T, d time.Duration) (*Gate, *gateLog) {
	l := &gateLog{ch: make(chan struct{}, 64)}
	g := NewGate(context.Background(), d)
	g.Submit = func(_ context.Context, dls []*dispatch.Delivery) error {
		now := time.Now()
		l.mu.Lock()
		for _, dl := range dls {
			if due, ok := Due(dl.Msg.Headers); ok && now.Before(due) {
				l.late = append(l.late, dl.Msg.ID)
			}
			l.events = append(l.events, "submit "+dl.Msg.ID)
		}
		l.mu.Unlock()
		select {
		case l.ch <- struct{}{}:
		default:
		}
		return nil
	}
	g.Pause = func(p int32) { l.add(fmt.Sprintf("pause %d", p)) }
	g.Resume = func(p int32) { l.add(fmt.Sprintf("resume %d", p)) }
	t.Cleanup(g.Close)
	return g, l
}

func (l *gateLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

func (l *gateLog) snapshot() ([]string, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...), append([]string(nil), l.late...)
}

// waitSubmitted waits until id was submitted.
func (l *gateLog) waitSubmitted(t *testing.T, id string) []string {
	t.Helper()
	return l.waitEvent(t, "submit "+id)
}

// waitEvent waits until event e happened.
func (l *gateLog) waitEvent(t *testing.T, want string) []string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		ev, _ := l.snapshot()
		for _, e := range ev {
			if e == want {
				return ev
			}
		}
		select {
		case <-l.ch:
		case <-timeout:
			t.Fatalf("no %q; events %v", want, ev)
		}
	}
}

func rec(id string, due time.Time, group string) *dispatch.Delivery {
	h := map[string]string{HeaderDue: FormatTime(due), HeaderTier: "1", HeaderAttempts: "2"}
	if group != "" {
		h[HeaderGroup] = group
	}
	return &dispatch.Delivery{Msg: &message.Message{ID: id, Headers: h, Delivery: message.Delivery{Attempt: 1}}}
}

func TestGateHoldsUntilDueInOrder(t *testing.T) {
	g, l := newGate(t, time.Second)
	due := time.Now().Add(40 * time.Millisecond)
	a, b := rec("a", due, "g"), rec("b", due.Add(20*time.Millisecond), "g")
	if err := g.Add(0, "assignment-1", "g", []*dispatch.Delivery{a, b}); err != nil {
		t.Fatal(err)
	}
	if ev, _ := l.snapshot(); len(ev) != 1 || ev[0] != "pause 0" {
		t.Fatalf("after Add of two records not due: events %v, want only [pause 0]", ev)
	}
	if n := g.Held(); n != 2 {
		t.Fatalf("Held = %d, want 2", n)
	}
	ev := l.waitEvent(t, "resume 0")
	want := []string{"pause 0", "submit a", "submit b", "resume 0"}
	if fmt.Sprint(ev) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", ev, want)
	}
	if _, late := l.snapshot(); len(late) > 0 {
		t.Errorf("submitted before their due time: %v", late)
	}
	if a.Msg.Delivery.Tier != 1 || a.Msg.Delivery.Attempt != 3 {
		t.Errorf("Apply: Tier=%d Attempt=%d, want 1 and 3", a.Msg.Delivery.Tier, a.Msg.Delivery.Attempt)
	}
}

func TestGateDueAndForeignPassAtOnce(t *testing.T) {
	g, l := newGate(t, time.Hour)
	past := rec("past", time.Now().Add(-time.Second), "g")
	other := rec("other", time.Now().Add(time.Hour), "another-group")
	if err := g.Add(3, 1, "g", []*dispatch.Delivery{past, other}); err != nil {
		t.Fatal(err)
	}
	ev, _ := l.snapshot()
	if fmt.Sprint(ev) != "[submit past submit other]" {
		t.Errorf("events %v: a due record and another group's record must pass at once, unpaused", ev)
	}
}

func TestGateDropAndCloseSubmitNothingMore(t *testing.T) {
	g, l := newGate(t, time.Second)
	due := time.Now().Add(30 * time.Millisecond)
	if err := g.Add(0, 1, "g", []*dispatch.Delivery{rec("dropped", due, "g")}); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(1, 1, "g", []*dispatch.Delivery{rec("kept", due.Add(60*time.Millisecond), "g")}); err != nil {
		t.Fatal(err)
	}
	g.Drop(0)
	// A new assignment of partition 1 replaces what the old one held.
	if err := g.Add(1, 2, "g", []*dispatch.Delivery{rec("kept2", due.Add(60*time.Millisecond), "g")}); err != nil {
		t.Fatal(err)
	}
	ev := l.waitSubmitted(t, "kept2")
	for _, e := range ev {
		if e == "submit dropped" || e == "submit kept" {
			t.Errorf("%s after its partition was dropped or reassigned; events %v", e, ev)
		}
	}
	if err := g.Add(2, 1, "g", []*dispatch.Delivery{rec("late", time.Now().Add(10*time.Millisecond), "g")}); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := g.Add(2, 1, "g", []*dispatch.Delivery{rec("after-close", time.Now(), "g")}); err == nil {
		t.Error("Add after Close succeeded")
	}
	if n := g.Held(); n != 0 {
		t.Errorf("Held after Close = %d, want 0", n)
	}
	// Close stopped late's timer: it is never submitted. (Checked by
	// waiting past its due time for a record of a second gate.)
	g2, l2 := newGate(t, time.Second)
	if err := g2.Add(0, 1, "g", []*dispatch.Delivery{rec("barrier", time.Now().Add(40*time.Millisecond), "g")}); err != nil {
		t.Fatal(err)
	}
	l2.waitSubmitted(t, "barrier")
	ev, _ = l.snapshot()
	for _, e := range ev {
		if e == "submit late" || e == "submit after-close" {
			t.Errorf("%s after Close; events %v", e, ev)
		}
	}
}

func TestFormatTimeRoundsUp(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123_400_000, time.UTC)
	if got := FormatTime(t0); got != "2026-01-02T03:04:05.124Z" {
		t.Errorf("FormatTime(%v) = %s, want ...05.124Z (rounded up, never before)", t0, got)
	}
	exact := time.Date(2026, 1, 2, 3, 4, 5, 123_000_000, time.UTC)
	if got := FormatTime(exact); got != "2026-01-02T03:04:05.123Z" {
		t.Errorf("FormatTime(%v) = %s", exact, got)
	}
}
