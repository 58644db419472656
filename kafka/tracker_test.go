package kafka

import (
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestPartStateCommitPointOnlyCoversContiguousSettledPrefix(t *testing.T) {
	ps := newPartState("t", 0)
	offsets := []int64{10, 11, 13, 14, 20} // gaps, as after compaction
	seqs := make([]uint64, len(offsets))
	for i, o := range offsets {
		s, ok := ps.add(o, 3)
		if !ok {
			t.Fatalf("add(%d) refused", o)
		}
		seqs[i] = s
	}
	if _, ok := ps.unmarked(); ok {
		t.Fatal("commit point set before anything settled")
	}
	ps.settle(seqs[1]) // 11 settles before 10
	ps.settle(seqs[3]) // 14 before 13
	if eo, ok := ps.unmarked(); ok {
		t.Fatalf("commit point %v moved past unsettled offset 10", eo)
	}
	ps.settle(seqs[0])
	if eo, ok := ps.unmarked(); !ok || eo != (kgo.EpochOffset{Epoch: 3, Offset: 12}) {
		t.Fatalf("after settling 10 and 11: point %v %v, want offset 12", eo, ok)
	}
	ps.settle(seqs[2])
	if eo, _ := ps.unmarked(); eo.Offset != 15 {
		t.Fatalf("after settling 13: point %v, want 15 (14 settled earlier)", eo)
	}
	if n := ps.outstanding(); n != 1 {
		t.Fatalf("outstanding = %d, want 1", n)
	}
	if _, ok := ps.unmarked(); ok {
		t.Fatal("unmarked reported an unchanged point twice")
	}
	ps.settle(seqs[4])
	if eo, _ := ps.unmarked(); eo.Offset != 21 {
		t.Fatalf("point %v, want 21", eo)
	}
}

func TestPartStateRefusesStaleAndDeadRecords(t *testing.T) {
	ps := newPartState("t", 0)
	if _, ok := ps.add(5, -1); !ok {
		t.Fatal("first add refused")
	}
	if _, ok := ps.add(5, -1); ok {
		t.Fatal("duplicate offset accepted")
	}
	if _, ok := ps.add(4, -1); ok {
		t.Fatal("earlier offset accepted")
	}
	s, _ := ps.add(6, -1)
	point, has := ps.kill()
	if has {
		t.Fatalf("killed state reports point %v with nothing settled", point)
	}
	ps.settle(s)
	if _, ok := ps.unmarked(); ok {
		t.Fatal("a settlement after kill moved the commit point")
	}
	if _, ok := ps.add(7, -1); ok {
		t.Fatal("dead state accepted a record")
	}
	if !ps.revoking.Load() {
		t.Fatal("kill did not set revoking")
	}
}

func TestPartStateRandomSettleOrder(t *testing.T) {
	for round := range 50 {
		ps := newPartState("t", 1)
		n := 3000
		seqs := make([]uint64, n)
		for i := range n {
			seqs[i], _ = ps.add(int64(i), 0)
		}
		order := rand.Perm(n)
		settled := make([]bool, n)
		for _, i := range order {
			ps.settle(seqs[i])
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
