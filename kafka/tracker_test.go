package kafka

import (
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// batch builds a recBatch with the given offsets and adds it to ps,
// returning the records handed over.
func addBatch(ps *partState, epoch int32, offsets ...int64) []*rec {
	b := &recBatch{}
	b.run.Init(make([]rec, len(offsets)))
	for i, o := range offsets {
		b.run.Items[i] = rec{offset: o, epoch: epoch, idx: int32(i)}
		b.run.Items[i].dl.Ref = b
	}
	var out []*rec
	for i := ps.add(b); i < len(b.run.Items); i++ {
		out = append(out, &b.run.Items[i])
	}
	return out
}

func TestPartStateCommitPointOnlyCoversContiguousSettledPrefix(t *testing.T) {
	ps := newPartState("t", 0, nil)
	// gaps, as after compaction, and two fetches
	rs := append(addBatch(ps, 3, 10, 11, 13), addBatch(ps, 3, 14, 20)...)
	if len(rs) != 5 {
		t.Fatalf("%d records accepted, want 5", len(rs))
	}
	if _, ok := ps.unmarked(); ok {
		t.Fatal("commit point set before anything settled")
	}
	ps.settle(rs[1]) // 11 settles before 10
	ps.settle(rs[3]) // 14 before 13
	if eo, ok := ps.unmarked(); ok {
		t.Fatalf("commit point %v moved past unsettled offset 10", eo)
	}
	ps.settle(rs[0])
	if eo, ok := ps.unmarked(); !ok || eo != (kgo.EpochOffset{Epoch: 3, Offset: 12}) {
		t.Fatalf("after settling 10 and 11: point %v %v, want offset 12", eo, ok)
	}
	ps.settle(rs[2])
	if eo, _ := ps.unmarked(); eo.Offset != 15 {
		t.Fatalf("after settling 13: point %v, want 15 (14 settled earlier, in the next batch)", eo)
	}
	if n := ps.outstanding(); n != 1 {
		t.Fatalf("outstanding = %d, want 1", n)
	}
	if _, ok := ps.unmarked(); ok {
		t.Fatal("unmarked reported an unchanged point twice")
	}
	ps.settle(rs[4])
	if eo, _ := ps.unmarked(); eo.Offset != 21 {
		t.Fatalf("point %v, want 21", eo)
	}
}

func TestPartStateRefusesStaleAndDeadRecords(t *testing.T) {
	ps := newPartState("t", 0, nil)
	if rs := addBatch(ps, -1, 5); len(rs) != 1 {
		t.Fatal("first batch refused")
	}
	if rs := addBatch(ps, -1, 5); len(rs) != 0 {
		t.Fatal("duplicate offset accepted")
	}
	if rs := addBatch(ps, -1, 3, 4); len(rs) != 0 {
		t.Fatal("earlier offsets accepted")
	}
	rs := addBatch(ps, -1, 4, 5, 6) // a stale prefix, then a new record
	if len(rs) != 1 || rs[0].offset != 6 {
		t.Fatalf("batch overlapping the last added: accepted %d records, want only offset 6", len(rs))
	}
	point, has := ps.kill()
	if has {
		t.Fatalf("killed state reports point %v with nothing settled", point)
	}
	ps.settle(rs[0])
	if _, ok := ps.unmarked(); ok {
		t.Fatal("a settlement after kill moved the commit point")
	}
	if rs := addBatch(ps, -1, 7); len(rs) != 0 {
		t.Fatal("dead state accepted a record")
	}
}

func TestPartStateRandomSettleOrder(t *testing.T) {
	for round := range 50 {
		ps := newPartState("t", 1, nil)
		n := 3000
		var rs []*rec
		for lo := 0; lo < n; {
			hi := min(n, lo+1+rand.IntN(300)) // fetches of varying size
			offs := make([]int64, 0, hi-lo)
			for o := lo; o < hi; o++ {
				offs = append(offs, int64(o))
			}
			rs = append(rs, addBatch(ps, 0, offs...)...)
			lo = hi
		}
		order := rand.Perm(n)
		settled := make([]bool, n)
		for _, i := range order {
			ps.settle(rs[i])
			settled[i] = true
			want := 0
			for want < n && settled[want] {
				want++
			}
			eo, ok := ps.unmarked()
			if want == 0 && ok {
				t.Fatalf("round %d: point %v with offset 0 unsettled", round, eo)
			}
			if ok && eo.Offset != int64(want) {
				t.Fatalf("round %d: point %d, want %d", round, eo.Offset, want)
			}
		}
		if ps.outstanding() != 0 {
			t.Fatalf("round %d: %d outstanding after settling all", round, ps.outstanding())
		}
	}
}
