package kafka

import (
	"sync"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/adapter/offsets"
	"github.com/ferrymsg/ferry/message"
)

// rec is one record in the dispatcher: the delivery, its message and its
// place in the partition's commit log. The records of one partition's
// fetch are built in one array, the Items of a recBatch's run, which lives
// until the last of them is settled or dropped. The delivery's Ref is the
// batch, and the record is found from its delivery (recOf), which saves a
// pointer per record: records are built and zeroed per fetch, so their
// size is consume throughput.
type rec struct {
	dl     dispatch.Delivery // first: recOf relies on it
	msg    message.Message
	offset int64 // kept apart from msg, which the handler may change
	epoch  int32
	idx    int32 // index in the batch's run.Items
}

// recOf returns the record whose delivery dl is.
func recOf(dl *dispatch.Delivery) *rec { return (*rec)(unsafe.Pointer(dl)) }

// rec.dl must be at offset 0 for recOf.
var _ [0]struct{} = [unsafe.Offsetof(rec{}.dl)]struct{}{}

// recBatch is the records of one partition from one fetch, in offset
// order: a run of the kit's offsets.Log.
type recBatch struct {
	ps    *partState
	run   offsets.Run[rec]
	skips int // records settled at add from the assignment's metadata (replay.go), not handed out
}

// partState tracks one assignment of one partition: the batches handed to
// the dispatcher in offset order, which of their records are settled, and
// the commit point, which is just past the longest settled prefix
// (offsets.Log). Records of different keys settle out of order; the commit
// point only moves over a contiguous run of settled records, so a commit
// never skips unsettled work. Offsets may have gaps (compaction,
// transaction markers): the log follows the records handed out, not the
// numbers between them.
//
// A partState lives from OnPartitionsAssigned until the partition is
// revoked or lost; a partition assigned again gets a new one, so late
// settlements from the old assignment cannot move the new commit point.
// Its scope groups the assignment's deliveries in the dispatcher, so that
// a revocation drains them (and only them) and cancels their handlers'
// context after the drain timeout.
type partState struct {
	topic     string
	partition int32
	scope     *dispatch.Scope

	mu     sync.Mutex
	dead   bool  // revoked or lost: settlements are ignored
	last   int64 // offset of the last added record, -1 before the first
	log    offsets.Log[rec]
	marked kgo.EpochOffset
	rp     partReplay // replay.go
	lag    partLag    // observe.go
}

func newPartState(topic string, partition int32, scope *dispatch.Scope) *partState {
	return &partState{topic: topic, partition: partition, scope: scope, last: -1, lag: partLag{first: -1, reported: -1}}
}

// add appends a built batch and returns the index of its first record to
// hand to the dispatcher: records at or before the last one added (a stale
// fetch from before a reassignment) are skipped. It returns the batch's
// length when nothing is to be handed over, also when the state is dead.
// Records that the assignment's commit metadata has settled (replay.go)
// are settled here; b.skips counts them, and the caller does not hand
// them over either (b.run.Settled).
func (ps *partState) add(b *recBatch) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	recs := b.run.Items
	n := len(recs)
	if ps.dead || n == 0 {
		return n
	}
	start := 0
	for start < n && recs[start].offset <= ps.last {
		start++
	}
	if start == n {
		return n
	}
	b.ps = ps
	ps.last = recs[n-1].offset
	ps.log.Append(&b.run, start)
	if ps.rp.skip != nil {
		b.skips = ps.skipLocked(b, start)
	}
	return start
}

// settle marks rc as settled; the commit point moves over the settled
// prefix.
func (ps *partState) settle(rc *rec) {
	b := rc.dl.Ref.(*recBatch)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.dead {
		ps.log.Settle(&b.run, int(rc.idx))
	}
}

// pointLocked returns the commit point: the offset after the last record
// of the settled prefix, with that record's leader epoch.
func (ps *partState) pointLocked() (kgo.EpochOffset, bool) {
	r := ps.log.Last()
	if r == nil {
		return kgo.EpochOffset{}, false
	}
	return kgo.EpochOffset{Epoch: r.epoch, Offset: r.offset + 1}, true
}

// unmarked returns the commit point if it moved since the last call.
func (ps *partState) unmarked() (kgo.EpochOffset, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.dead {
		return kgo.EpochOffset{}, false
	}
	p, ok := ps.pointLocked()
	if !ok || p == ps.marked {
		return kgo.EpochOffset{}, false
	}
	ps.marked = p
	return p, true
}

// kill makes later settlements no-ops and returns the final commit point.
func (ps *partState) kill() (kgo.EpochOffset, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.dead = true
	p, ok := ps.pointLocked()
	ps.log.Reset()
	return p, ok
}

// outstanding returns how many added records are not settled.
func (ps *partState) outstanding() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.log.Outstanding()
}
