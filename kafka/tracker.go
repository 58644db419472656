package kafka

import (
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partState tracks one assignment of one partition: the records handed to
// the dispatcher in offset order, which of them are settled, and the commit
// point, which is just past the longest settled prefix. Records of different
// keys settle out of order; the commit point only moves over a contiguous
// run of settled records, so a commit never skips unsettled work.
//
// A partState lives from OnPartitionsAssigned until the partition is
// revoked or lost; a partition assigned again gets a new one, so late
// settlements from the old assignment cannot move the new commit point.
type partState struct {
	topic     string
	partition int32

	// revoking is set when the partition is being revoked or was lost; the
	// poll loop submits no more records of it.
	revoking atomic.Bool

	mu      sync.Mutex
	dead    bool  // revoked or lost: settlements are ignored
	last    int64 // offset of the last appended record, -1 before the first
	entries []entry
	head    int    // index of the oldest unsettled entry
	headSeq uint64 // sequence number of entries[head]
	point   kgo.EpochOffset
	has     bool // point is set
	marked  kgo.EpochOffset
}

type entry struct {
	offset int64
	epoch  int32
	done   bool
}

func newPartState(topic string, partition int32) *partState {
	return &partState{topic: topic, partition: partition, last: -1}
}

// add appends a record handed to the dispatcher and returns its sequence
// number. It returns false for a record at or before the last one added
// (a stale fetch from before a reassignment) and when the state is dead.
func (ps *partState) add(offset int64, epoch int32) (uint64, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.addLocked(offset, epoch)
}

// addAll is add for a fetched batch under one lock: it calls fn with the
// index and sequence number of each record it accepts.
func (ps *partState) addAll(rs []*kgo.Record, fn func(i int, seq uint64)) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, r := range rs {
		if seq, ok := ps.addLocked(r.Offset, r.LeaderEpoch); ok {
			fn(i, seq)
		}
	}
}

func (ps *partState) addLocked(offset int64, epoch int32) (uint64, bool) {
	if ps.dead || offset <= ps.last {
		return 0, false
	}
	ps.last = offset
	seq := ps.headSeq + uint64(len(ps.entries)-ps.head)
	ps.entries = append(ps.entries, entry{offset: offset, epoch: epoch})
	return seq, true
}

// settle marks the record with sequence number seq as settled and moves the
// commit point over the settled prefix.
func (ps *partState) settle(seq uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.dead || seq < ps.headSeq {
		return
	}
	i := ps.head + int(seq-ps.headSeq)
	if i >= len(ps.entries) {
		return
	}
	ps.entries[i].done = true
	if i != ps.head {
		return
	}
	for ps.head < len(ps.entries) && ps.entries[ps.head].done {
		e := ps.entries[ps.head]
		ps.point = kgo.EpochOffset{Epoch: e.epoch, Offset: e.offset + 1}
		ps.has = true
		ps.head++
		ps.headSeq++
	}
	switch {
	case ps.head == len(ps.entries):
		ps.entries = ps.entries[:0]
		ps.head = 0
	case ps.head > 1024 && ps.head*2 > len(ps.entries):
		n := copy(ps.entries, ps.entries[ps.head:])
		ps.entries = ps.entries[:n]
		ps.head = 0
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
	ps.revoking.Store(true)
	ps.dead = true
	return ps.point, ps.has
}

// outstanding returns how many added records are not settled.
func (ps *partState) outstanding() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.entries) - ps.head
}
