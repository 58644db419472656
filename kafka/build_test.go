package kafka

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBuildKeysAndIDs: the keys and IDs of one build share a buffer; each
// message gets its own, a record without ferry-id gets
// "<topic>-<partition>-<offset>", and a build whose keys and IDs are far
// longer than the previous build's (the buffer's size estimate) is still
// right.
func TestBuildKeysAndIDs(t *testing.T) {
	id := func(v string) []kgo.RecordHeader { return []kgo.RecordHeader{{Key: HeaderID, Value: []byte(v)}} }
	sub := &subscription{group: "g"}
	long := strings.Repeat("k", 3000)
	for round, tc := range []struct {
		recs []*kgo.Record
		keys []string
		ids  []string
	}{
		{
			recs: []*kgo.Record{
				{Topic: "t", Partition: 3, Offset: 5, Key: []byte("a"), Headers: id("id0")},
				{Topic: "t", Partition: 3, Offset: 6},
				{Topic: "t", Partition: 3, Offset: 9, Key: []byte("bb")},
				{Topic: "t", Partition: 3, Offset: 1234567890123, Headers: id("x")},
			},
			keys: []string{"a", "", "bb", ""},
			ids:  []string{"id0", "t-3-6", "t-3-9", "x"},
		},
		{
			recs: []*kgo.Record{
				{Topic: "t", Partition: 12, Offset: 10, Key: []byte(long), Headers: id(long + "-id")},
				{Topic: "t", Partition: 12, Offset: 11, Key: []byte(long)},
			},
			keys: []string{long, long},
			ids:  []string{long + "-id", "t-12-11"},
		},
	} {
		b := sub.build(tc.recs, nil)
		for i := range tc.recs {
			m := &b.run.Items[i].msg
			if m.Key != tc.keys[i] || m.ID != tc.ids[i] {
				t.Errorf("build %d, record %d: key %.20q ID %.40q, want key %.20q ID %.40q", round, i, m.Key, m.ID, tc.keys[i], tc.ids[i])
			}
			if m.Delivery.Offset != tc.recs[i].Offset || m.Delivery.Partition != tc.recs[i].Partition {
				t.Errorf("build %d, record %d: delivery %+v", round, i, m.Delivery)
			}
		}
	}
}

// BenchmarkBuild measures build alone: turning a fetched partition's
// records (100 B values; with and without a ferry-id header) into
// delivered messages, per record.
func BenchmarkBuild(b *testing.B) {
	for _, tc := range []struct {
		name string
		hdr  bool
	}{{"no-headers", false}, {"ferry-id", true}} {
		b.Run(tc.name, func(b *testing.B) {
			payload := make([]byte, 100)
			ts := time.Now()
			recs := make([]*kgo.Record, recChunk)
			for j := range recs {
				recs[j] = &kgo.Record{Topic: "bench-topic-with-a-longish-name", Value: payload, Timestamp: ts, Offset: int64(1_000_000 + j)}
				if tc.hdr {
					recs[j].Headers = []kgo.RecordHeader{{Key: HeaderID, Value: []byte("0193a4b2-7c1e-7d3f-9a2b-1c4d5e6f7a8b")}}
				}
			}
			sub := &subscription{topic: recs[0].Topic, group: "g", cfg: &config{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += recChunk {
				sub.build(recs[:min(recChunk, b.N-i)], nil)
			}
		})
	}
}

// TestIDText: the incremented text of consecutive offsets, across
// carries and a new digit, and after jumps, is the prefix and strconv's.
func TestIDText(t *testing.T) {
	var it idText
	prefix := []byte("topic-3-")
	check := func(n int64) {
		t.Helper()
		if got, want := string(it.of(prefix, n)), string(prefix)+strconv.FormatInt(n, 10); got != want {
			t.Fatalf("of(%d) = %q, want %q", n, got, want)
		}
	}
	for n := int64(0); n <= 10_050; n++ {
		check(n)
	}
	for _, start := range []int64{7, 99_998, 5, 1<<40 - 3, 999_999_999_999_999_990, math.MaxInt64 - 3, 0} {
		for i := int64(0); i < 12 && start <= math.MaxInt64-i; i++ {
			check(start + i)
		}
	}
	check(3) // backwards
	check(3) // the same again
	check(4)
	var fresh idText // as in the next build, with its own prefix
	it, prefix = fresh, []byte("other-12-")
	check(5)
	check(6)
}
