package delay

import (
	"context"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/adapter/dispatch"
)

// Gate holds the fetched records of a tier's partitions until they are
// due, for log-based adapters (a Kafka or inmem tier topic). Records of a
// partition pass in order: the partition's head waits for its due time,
// and everything behind it waits with it. While a partition's head waits
// the Gate asks the adapter to pause fetching the partition (Pause) and
// arms one timer for the head's due time; when the timer fires it hands
// the due records to the dispatcher (Submit) and, once nothing of the
// partition waits any more, resumes fetching it (Resume). Nothing polls:
// a waiting partition costs one timer.
//
// States of one partition:
//
//	open ──Add, head not due──▶ waiting (paused, timer at the head's due time)
//	waiting ──timer, due records submitted, more wait──▶ waiting (timer re-armed)
//	waiting ──timer, all submitted──▶ open (resumed)
//	open or waiting ──Drop (revoked, reassigned)──▶ gone: held records dropped
//	    unsubmitted (the next owner fetches them again from the commit
//	    point), partition resumed
//
// Submissions happen under the Gate's lock, so a partition's records
// reach the dispatcher in order and none is submitted after Drop returns:
// the adapter calls Drop before it drains the partition's scope.
type Gate struct {
	// Delay is the tier's delay: the due time of a record without a due
	// header is its Time plus Delay.
	Delay time.Duration
	// Submit hands due records to the dispatcher (SubmitBatch).
	Submit func(ctx context.Context, dls []*dispatch.Delivery) error
	// Pause and Resume stop and restart fetching partition p.
	Pause, Resume func(p int32)

	ctx    context.Context
	mu     sync.Mutex
	parts  map[int32]*gatePart
	closed bool
	now    func() time.Time
}

type gatePart struct {
	owner  any // the partition assignment the held records belong to
	held   []heldRecord
	timer  *time.Timer
	paused bool
	gen    uint64 // bumped on every Drop, so that a stale timer does nothing
}

type heldRecord struct {
	dl  *dispatch.Delivery
	due time.Time
}

// NewGate returns a gate whose timer submissions use ctx (the Subscribe
// call's). Set its fields before the first Add.
func NewGate(ctx context.Context, delay time.Duration) *Gate {
	return &Gate{Delay: delay, ctx: ctx, parts: map[int32]*gatePart{}, now: time.Now}
}

// due returns when dl may be handled: its due header, else its time plus
// the tier's delay; never for a message of another group (Handler settles
// those at once), which the caller marks by group.
func (g *Gate) due(dl *dispatch.Delivery, group string) time.Time {
	m := dl.Msg
	if Foreign(m, group) {
		return time.Time{}
	}
	if t, ok := Due(m.Headers); ok {
		return t
	}
	if m.Time.IsZero() {
		return time.Time{}
	}
	return m.Time.Add(g.Delay)
}

// Add takes a partition's fetched records, in order, for the assignment
// owner (a value that changes when the partition is assigned again), and
// applies the tier headers to each (Apply). It submits the due prefix at
// once and holds the rest. It returns the Submit error (ctx ended, the
// dispatcher stopped).
func (g *Gate) Add(p int32, owner any, group string, dls []*dispatch.Delivery) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return context.Canceled
	}
	gp := g.parts[p]
	if gp == nil || gp.owner != owner {
		if gp != nil {
			g.dropLocked(p, gp)
		}
		gp = &gatePart{owner: owner}
		g.parts[p] = gp
	}
	for _, dl := range dls {
		Apply(dl.Msg)
		gp.held = append(gp.held, heldRecord{dl: dl, due: g.due(dl, group)})
	}
	return g.pumpLocked(p, gp)
}

// pumpLocked submits the due prefix of p's held records and, if records
// remain, pauses p and arms the timer for the head.
func (g *Gate) pumpLocked(p int32, gp *gatePart) error {
	now := g.now()
	n := 0
	for n < len(gp.held) && !now.Before(gp.held[n].due) {
		n++
	}
	var err error
	if n > 0 {
		batch := make([]*dispatch.Delivery, n)
		for i := range batch {
			batch[i] = gp.held[i].dl
		}
		clear(gp.held[:n])
		gp.held = gp.held[n:]
		if len(gp.held) == 0 {
			gp.held = nil
		}
		err = g.Submit(g.ctx, batch)
	}
	if len(gp.held) == 0 {
		if gp.paused {
			gp.paused = false
			g.Resume(p)
		}
		return err
	}
	if !gp.paused {
		gp.paused = true
		g.Pause(p)
	}
	wait := gp.held[0].due.Sub(g.now())
	gen := gp.gen
	if gp.timer != nil {
		gp.timer.Stop()
	}
	gp.timer = time.AfterFunc(wait, func() { g.fire(p, gp, gen) })
	return err
}

// fire is a partition's timer: submit what is due now.
func (g *Gate) fire(p int32, gp *gatePart, gen uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.parts[p] != gp || gp.gen != gen {
		return
	}
	gp.timer = nil
	// A failed submission means the subscription is ending: the held
	// records are not settled, so the next owner fetches them again.
	_ = g.pumpLocked(p, gp)
}

// Drop forgets the held records of the given partitions (revoked, or
// assigned anew) and resumes fetching them. After it returns no record of
// theirs held before is submitted.
func (g *Gate) Drop(parts ...int32) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range parts {
		gp := g.parts[p]
		if gp == nil {
			g.Resume(p) // paused by an earlier assignment of ours: never leave it so
			continue
		}
		g.dropLocked(p, gp)
	}
}

func (g *Gate) dropLocked(p int32, gp *gatePart) {
	gp.gen++
	if gp.timer != nil {
		gp.timer.Stop()
		gp.timer = nil
	}
	clear(gp.held)
	gp.held = nil
	delete(g.parts, p)
	if gp.paused {
		gp.paused = false
	}
	g.Resume(p)
}

// Held returns the number of records the gate holds.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, gp := range g.parts {
		n += len(gp.held)
	}
	return n
}

// Close stops every timer and drops the held records: the subscription
// ends, and its next owner fetches them again. Nothing is submitted after
// Close returns.
func (g *Gate) Close() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for p, gp := range g.parts {
		gp.gen++
		if gp.timer != nil {
			gp.timer.Stop()
		}
		gp.held = nil
		delete(g.parts, p)
	}
}
