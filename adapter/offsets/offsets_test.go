package offsets

import (
	"math/rand/v2"
	"testing"
)

func TestTrackerContiguousPrefix(t *testing.T) {
	for trial := range 50 {
		const n = 2000
		start := int64(trial * 7)
		var tr Tracker
		tr.Reset(start)
		perm := rand.Perm(n)
		settled := make([]bool, n)
		for _, i := range perm {
			settled[i] = true
			tr.Settle(start + int64(i))
			want := start
			for want-start < n && settled[want-start] {
				want++
			}
			if got := tr.Next(); got != want {
				t.Fatalf("after settling %d: next %d, want %d", i, got, want)
			}
		}
		if tr.Next() != start+n {
			t.Fatalf("next %d, want %d", tr.Next(), start+n)
		}
	}
}

func TestTrackerIgnoresOldOffsets(t *testing.T) {
	var tr Tracker
	tr.Reset(10)
	if tr.Settle(3) || tr.Next() != 10 {
		t.Fatalf("settling below the commit point moved it to %d", tr.Next())
	}
	if tr.Settle(11) || tr.Next() != 10 {
		t.Fatalf("a gap was skipped: next %d", tr.Next())
	}
	if !tr.Settle(10) || tr.Next() != 12 {
		t.Fatalf("next %d, want 12", tr.Next())
	}
}
