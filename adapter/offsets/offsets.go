package offsets

// Tracker holds the commit point of one partition and the settled offsets
// beyond it. The zero value starts at offset 0. It is not safe for
// concurrent use.
type Tracker struct {
	next int64  // lowest offset not yet settled: the commit point
	done []bool // done[i] reports whether next+i is settled (beyond index 0)
	head int    // done[head] corresponds to next
}

// Reset starts tracking at next, forgetting everything settled.
func (t *Tracker) Reset(next int64) {
	t.next = next
	t.done = t.done[:0]
	t.head = 0
}

// Next returns the commit point: every offset below it is settled and the
// offset itself is not.
func (t *Tracker) Next() int64 { return t.next }

// Settle records off as settled and reports whether the commit point moved.
// Offsets below the commit point are ignored.
func (t *Tracker) Settle(off int64) bool {
	if off < t.next {
		return false
	}
	idx := int(off - t.next)
	if idx == 0 && t.head == len(t.done) {
		// In-order fast path: nothing settled beyond the commit point.
		t.next++
		t.done = t.done[:0]
		t.head = 0
		return true
	}
	for t.head+idx >= len(t.done) {
		t.done = append(t.done, false)
	}
	t.done[t.head+idx] = true
	moved := false
	for t.head < len(t.done) && t.done[t.head] {
		t.head++
		t.next++
		moved = true
	}
	if t.head == len(t.done) {
		t.done = t.done[:0]
		t.head = 0
	} else if t.head > 1024 && t.head*2 > len(t.done) {
		n := copy(t.done, t.done[t.head:])
		t.done = t.done[:n]
		t.head = 0
	}
	return moved
}
