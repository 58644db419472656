package offsets

import (
	"math/rand/v2"
	"testing"
)

type item struct{ off int64 }

func newRun(offs ...int64) *Run[item] {
	items := make([]item, len(offs))
	for i, o := range offs {
		items[i].off = o
	}
	return NewRun(items)
}

func lastOff(l *Log[item]) int64 {
	if it := l.Last(); it != nil {
		return it.off
	}
	return -1
}

func TestLogCommitPointCoversOnlyTheSettledPrefix(t *testing.T) {
	var l Log[item]
	// Gaps, as after compaction, and two fetches.
	a, b := newRun(10, 11, 13), newRun(14, 20)
	l.Append(a, 0)
	l.Append(b, 0)
	if l.Settle(a, 1) || l.Settle(b, 0) || l.Last() != nil {
		t.Fatalf("the commit point moved past unsettled offset 10 to %d", lastOff(&l))
	}
	if !l.Settle(a, 0) || lastOff(&l) != 11 {
		t.Fatalf("after settling 10 and 11: last %d, want 11", lastOff(&l))
	}
	if !l.Settle(a, 2) || lastOff(&l) != 14 {
		t.Fatalf("after settling 13: last %d, want 14 (settled earlier, in the next run)", lastOff(&l))
	}
	if n := l.Outstanding(); n != 1 {
		t.Fatalf("outstanding %d, want 1", n)
	}
	if l.Settle(a, 2) {
		t.Fatal("settling twice moved the commit point")
	}
	if !l.Settle(b, 1) || lastOff(&l) != 20 || l.Outstanding() != 0 {
		t.Fatalf("last %d, outstanding %d, want 20 and 0", lastOff(&l), l.Outstanding())
	}
}

func TestLogSkipsItemsNotHandedOut(t *testing.T) {
	var l Log[item]
	r := newRun(5, 6, 7)
	l.Append(r, 2) // 5 and 6 were handed out before (a stale fetch)
	if l.Outstanding() != 1 {
		t.Fatalf("outstanding %d, want 1", l.Outstanding())
	}
	if !l.Settle(r, 2) || lastOff(&l) != 7 {
		t.Fatalf("last %d, want 7", lastOff(&l))
	}
	l.Append(newRun(8), 1) // nothing handed out
	if l.Outstanding() != 0 {
		t.Fatal("an empty append is outstanding")
	}
}

func TestLogResetIgnoresOldRuns(t *testing.T) {
	var l Log[item]
	r := newRun(1, 2)
	l.Append(r, 0)
	l.Reset()
	if l.Settle(r, 0) || l.Last() != nil {
		t.Fatal("a run from before Reset moved the commit point")
	}
	n := newRun(3)
	l.Append(n, 0)
	if !l.Settle(n, 0) || lastOff(&l) != 3 {
		t.Fatalf("last %d, want 3", lastOff(&l))
	}
}

func TestLogRandomOrderAgainstAModel(t *testing.T) {
	for trial := range 50 {
		var l Log[item]
		var all []*item
		type pos struct {
			r *Run[item]
			i int
		}
		var ps []pos
		off := int64(trial)
		for range 1 + rand.IntN(20) {
			n := 1 + rand.IntN(50)
			offs := make([]int64, n)
			for i := range offs {
				off += 1 + int64(rand.IntN(3)) // gaps
				offs[i] = off
			}
			r := newRun(offs...)
			l.Append(r, 0)
			for i := range r.Items {
				all = append(all, &r.Items[i])
				ps = append(ps, pos{r, i})
			}
		}
		settled := make([]bool, len(ps))
		for _, k := range rand.Perm(len(ps)) {
			settled[k] = true
			l.Settle(ps[k].r, ps[k].i)
			want := -1
			for want+1 < len(ps) && settled[want+1] {
				want++
			}
			switch got := l.Last(); {
			case want < 0 && got != nil:
				t.Fatalf("last %d, want none", got.off)
			case want >= 0 && got != all[want]:
				t.Fatalf("last %d, want %d", lastOff(&l), all[want].off)
			}
		}
	}
}

func BenchmarkLogSettleInOrder(b *testing.B) {
	var l Log[item]
	const n = 128
	b.ReportAllocs()
	for i := 0; i < b.N; i += n {
		r := NewRun(make([]item, n))
		l.Append(r, 0)
		for j := range n {
			l.Settle(r, j)
		}
	}
}

// TestLogSettleRangeAgainstAModel: settling random ranges of runs (some
// overlapping ones settled before) moves the commit point exactly as far
// as the model's settled prefix, and reports a move only when it moved.
func TestLogSettleRangeAgainstAModel(t *testing.T) {
	for trial := range 50 {
		var l Log[item]
		type pos struct {
			r *Run[item]
			i int
		}
		var ps []pos
		var all []*item
		for range 1 + rand.IntN(10) {
			r := NewRun(make([]item, 1+rand.IntN(40)))
			for i := range r.Items {
				r.Items[i].off = int64(len(ps))
				ps = append(ps, pos{r, i})
				all = append(all, &r.Items[i])
			}
			l.Append(r, 0)
		}
		settled := make([]bool, len(ps))
		prefix := -1
		for range 4 * len(ps) {
			k := rand.IntN(len(ps))
			r, i := ps[k].r, ps[k].i
			j := i + 1 + rand.IntN(len(r.Items)-i)
			for x := k; x < k+(j-i); x++ {
				settled[x] = true
			}
			moved := l.SettleRange(r, i, j)
			was := prefix
			for prefix+1 < len(ps) && settled[prefix+1] {
				prefix++
			}
			if moved != (prefix > was) {
				t.Fatalf("trial %d: SettleRange(%d, %d) reported moved=%v, the prefix went %d -> %d", trial, i, j, moved, was, prefix)
			}
			if got := l.Last(); prefix < 0 && got != nil || prefix >= 0 && got != all[prefix] {
				t.Fatalf("trial %d: last %d, want %d", trial, lastOff(&l), prefix)
			}
		}
	}
}
