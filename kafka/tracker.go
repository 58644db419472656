package kafka

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// rec is one record in the dispatcher: the delivery, its message and its
// place in the partition tracker. The records of one partition's fetch are
// built in one array (a recBatch), which lives until the last of them is
// settled or dropped.
type rec struct {
	dl     dispatch.Delivery
	msg    message.Message
	b      *recBatch
	offset int64 // kept apart from msg, which the handler may change
	epoch  int32
	done   bool // settled; under the partState lock
}

// recBatch is the records of one partition from one fetch, in offset order.
type recBatch struct {
	ps   *partState
	recs []rec
	head int // index of the oldest record not settled
}

// partState tracks one assignment of one partition: the batches handed to
// the dispatcher in offset order, which of their records are settled, and
// the commit point, which is just past the longest settled prefix. Records
// of different keys settle out of order; the commit point only moves over
// a contiguous run of settled records, so a commit never skips unsettled
// work.
//
// A partState lives from OnPartitionsAssigned until the partition is
// revoked or lost; a partition assigned again gets a new one, so late
// settlements from the old assignment cannot move the new commit point.
type partState struct {
	topic     string
	partition int32

	mu      sync.Mutex
	dead    bool  // revoked or lost: settlements are ignored
	last    int64 // offset of the last added record, -1 before the first
	batches []*recBatch
	point   kgo.EpochOffset
	has     bool // point is set
	marked  kgo.EpochOffset
}

func newPartState(topic string, partition int32) *partState {
	return &partState{topic: topic, partition: partition, last: -1}
}

// add appends a built batch and returns the index of its first record to
// hand to the dispatcher: records at or before the last one added (a stale
// fetch from before a reassignment) are skipped. It returns len(b.recs)
// when nothing is to be handed over, also when the state is dead.
func (ps *partState) add(b *recBatch) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := len(b.recs)
	if ps.dead || n == 0 {
		return n
	}
	start := 0
	for start < n && b.recs[start].offset <= ps.last {
		start++
	}
	if start == n {
		return n
	}
	b.ps, b.head = ps, start
	ps.last = b.recs[n-1].offset
	ps.batches = append(ps.batches, b)
	return start
}

// settle marks rc as settled and moves the commit point over the settled
// prefix.
func (ps *partState) settle(rc *rec) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.dead {
		return
	}
	rc.done = true
	b := rc.b
	if len(ps.batches) == 0 || ps.batches[0] != b || &b.recs[b.head] != rc {
		return // an earlier record is still outstanding
	}
	for len(ps.batches) > 0 {
		b := ps.batches[0]
		for b.head < len(b.recs) && b.recs[b.head].done {
			r := &b.recs[b.head]
			ps.point = kgo.EpochOffset{Epoch: r.epoch, Offset: r.offset + 1}
			ps.has = true
			b.head++
		}
		if b.head < len(b.recs) {
			return
		}
		n := copy(ps.batches, ps.batches[1:])
		ps.batches[n] = nil
		ps.batches = ps.batches[:n]
	}
}

// unmarked returns the commit point if it moved since the last call.
func (ps *partState) unmarked() (kgo.EpochOffset, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.dead || !ps.has || ps.point == ps.marked {
		return kgo.EpochOffset{}, false
	}
	ps.marked = ps.point
	return ps.point, true
}

// kill makes later settlements no-ops and returns the final commit point.
func (ps *partState) kill() (kgo.EpochOffset, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.dead = true
	ps.batches = nil
	return ps.point, ps.has
}

// outstanding returns how many added records are not settled.
func (ps *partState) outstanding() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := 0
	for _, b := range ps.batches {
		for i := b.head; i < len(b.recs); i++ {
			if !b.recs[i].done {
				n++
			}
		}
	}
	return n
}
