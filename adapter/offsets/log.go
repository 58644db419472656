package offsets

// Run is a run of positions handed out together and in order, such as
// the records of one partition from one fetch. Items holds the adapter's
// records, one per position, in position order; the Log that the run is
// appended to tracks which of them are settled. Create it with NewRun or
// Init.
type Run[T any] struct {
	// Items are the adapter's records. The Log does not read them; it
	// hands back a pointer to one (Log.Last).
	Items []T
	done  []bool // done[i]: Items[i] is settled (or was never handed out)
	head  int    // index of the oldest item not settled
}

// NewRun returns a run over items.
func NewRun[T any](items []T) *Run[T] {
	r := new(Run[T])
	r.Init(items)
	return r
}

// Init makes r a run over items, for a Run embedded in the adapter's own
// batch struct. A Run must not be copied after Init.
func (r *Run[T]) Init(items []T) {
	r.Items, r.done, r.head = items, make([]bool, len(items)), 0
}

// Log tracks the commit point of one partition whose positions are handed
// out in runs, in order, and settled in any order. Unlike Tracker it does
// not assume the positions are consecutive numbers: it follows the items
// handed out, so the gaps of a Kafka partition (compacted records,
// transaction markers) cost nothing, and settling costs no lookup: the
// adapter passes the run and the index it keeps with each record. The
// commit point is just past the longest settled prefix; Last returns that
// prefix's last item, whose position + 1 the adapter commits.
//
// The zero value is an empty log. It is not safe for concurrent use.
type Log[T any] struct {
	runs []*Run[T] // appended, not yet fully settled, in order
	last *T        // last item of the settled prefix; nil before the first
}

// Append adds r's items from index from on, in order after everything
// appended before; the items before from are not handed out (a stale
// part of a fetch) and count as settled. A run must be appended to one
// Log, once.
func (l *Log[T]) Append(r *Run[T], from int) {
	for i := range from {
		r.done[i] = true
	}
	r.head = from
	if from < len(r.Items) {
		l.runs = append(l.runs, r)
	}
}

// Settle marks item i of r settled and reports whether the commit point
// moved. Settling an item twice is harmless. After Reset, settling an item
// of an earlier run records nothing.
func (l *Log[T]) Settle(r *Run[T], i int) bool {
	if r.done[i] {
		return false
	}
	r.done[i] = true
	if len(l.runs) == 0 || l.runs[0] != r || r.head != i {
		return false // an earlier item is still outstanding
	}
	l.advance()
	return true
}

// SettleRange is Settle for items i to j-1 of r (a batch's records that
// are adjacent in r), in one step.
func (l *Log[T]) SettleRange(r *Run[T], i, j int) bool {
	for k := i; k < j; k++ {
		r.done[k] = true
	}
	if len(l.runs) == 0 || l.runs[0] != r || r.head < i || r.head >= j {
		return false // the head was not among them: nothing moved
	}
	l.advance()
	return true
}

// advance moves the commit point over the settled items after it.
func (l *Log[T]) advance() {
	for len(l.runs) > 0 {
		b := l.runs[0]
		h := b.head
		for h < len(b.Items) && b.done[h] {
			h++
		}
		if h > b.head {
			b.head = h
			l.last = &b.Items[h-1]
		}
		if h < len(b.Items) {
			break
		}
		n := copy(l.runs, l.runs[1:])
		l.runs[n] = nil
		l.runs = l.runs[:n]
	}
}

// Last returns the last item of the settled prefix: everything appended
// up to it is settled, and the item after it (if any) is not. It is nil
// until the first item of the log settled.
func (l *Log[T]) Last() *T { return l.last }

// Outstanding returns how many appended items are not settled.
func (l *Log[T]) Outstanding() int {
	n := 0
	for _, r := range l.runs {
		for i := r.head; i < len(r.Items); i++ {
			if !r.done[i] {
				n++
			}
		}
	}
	return n
}

// Reset forgets every run and the settled prefix; the log is empty again.
// Later settlements of the forgotten runs' items move nothing.
func (l *Log[T]) Reset() {
	clear(l.runs)
	l.runs = l.runs[:0]
	l.last = nil
}
