package offsets

import (
	"slices"
	"strings"
	"testing"
)

func TestSettledRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		base  int64
		spans []Span
	}{
		{0, []Span{{1, 1}}},
		{41, []Span{{43, 10_042}}},
		{1 << 40, []Span{{1<<40 + 2, 1<<40 + 2}, {1<<40 + 4, 1<<40 + 900}, {1<<40 + 1000, 1<<40 + 1001}}},
	} {
		s, n := EncodeSettled(tc.base, tc.spans, 4000)
		if n != len(tc.spans) || !strings.HasPrefix(s, SettledPrefix) {
			t.Fatalf("EncodeSettled(%d, %v) = %q, %d", tc.base, tc.spans, s, n)
		}
		base, spans, ok := DecodeSettled(s)
		if !ok || base != tc.base || !slices.Equal(spans, tc.spans) {
			t.Errorf("DecodeSettled(%q) = %d, %v, %v; want %d, %v", s, base, spans, ok, tc.base, tc.spans)
		}
	}
}

// Thousands of gaps: the encoding keeps the first spans that fit and says
// how many.
func TestSettledTruncates(t *testing.T) {
	var spans []Span
	for i := range int64(5000) {
		spans = append(spans, Span{100 + 2*i, 100 + 2*i}) // every other offset settled
	}
	s, n := EncodeSettled(99, spans, 4000)
	if len(s) > 4000 {
		t.Fatalf("encoding is %d bytes, want at most 4000", len(s))
	}
	if n == 0 || n >= len(spans) {
		t.Fatalf("encoded %d of %d spans, want some but not all", n, len(spans))
	}
	base, got, ok := DecodeSettled(s)
	if !ok || base != 99 || !slices.Equal(got, spans[:n]) {
		t.Fatalf("decoded %d, %d spans, %v; want 99, the first %d", base, len(got), ok, n)
	}
	t.Logf("%d one-offset gaps: %d spans in %d bytes", len(spans), n, len(s))
	if s, n := EncodeSettled(99, spans, len(SettledPrefix)+1); s != "" || n != 0 {
		t.Errorf("no room: got %q, %d; want \"\", 0", s, n)
	}
}

func TestSettledIgnoresForeign(t *testing.T) {
	for _, s := range []string{"", "consumer-1-4f2c", "ferry1:", "ferry1:!!!", "ferry2:AQI", "ferry1:AQ", "ferry1:AQAB", "{\"app\":\"java\"}"} {
		if base, spans, ok := DecodeSettled(s); ok {
			t.Errorf("DecodeSettled(%q) = %d, %v, true; want false", s, base, spans)
		}
	}
	// Spans not above base or not sorted are not encoded.
	if s, n := EncodeSettled(10, []Span{{10, 12}}, 4000); s != "" || n != 0 {
		t.Errorf("span at base: got %q, %d", s, n)
	}
	if _, n := EncodeSettled(10, []Span{{12, 13}, {14, 15}}, 4000); n != 1 {
		t.Errorf("adjacent spans: encoded %d, want 1 (the first)", n)
	}
}

func TestLogBeyond(t *testing.T) {
	var l Log[int]
	r1, r2 := NewRun([]int{10, 11, 12}), NewRun([]int{13, 14})
	l.Append(r1, 0)
	l.Append(r2, 0)
	l.Settle(r1, 0)
	l.Settle(r1, 2)
	l.Settle(r2, 1)
	var got []int
	var settled []bool
	l.Beyond(func(v *int, s bool) { got, settled = append(got, *v), append(settled, s) })
	if !slices.Equal(got, []int{11, 12, 13, 14}) || !slices.Equal(settled, []bool{false, true, false, true}) {
		t.Fatalf("Beyond visited %v %v", got, settled)
	}
	if !r2.Settled(1) || r2.Settled(0) {
		t.Fatal("Run.Settled")
	}
}

// FuzzDecodeSettled checks that any metadata string decodes without a
// panic, and that whatever decodes is sorted, above its base, and
// encodes back to the same string.
func FuzzDecodeSettled(f *testing.F) {
	s, _ := EncodeSettled(7, []Span{{9, 9}, {11, 400}}, 4000)
	f.Add(s)
	f.Add("")
	f.Add("ferry1:AQ")
	f.Add("consumer-1")
	f.Fuzz(func(t *testing.T, s string) {
		base, spans, ok := DecodeSettled(s)
		if !ok {
			return
		}
		prev := base
		for _, sp := range spans {
			if sp.First <= prev || sp.Last < sp.First {
				t.Fatalf("%q: span %v after %d", s, sp, prev)
			}
			prev = sp.Last + 1
		}
		again, n := EncodeSettled(base, spans, 1<<20)
		if n != len(spans) {
			t.Fatalf("%q: re-encoded %d of %d spans", s, n, len(spans))
		}
		b2, s2, ok := DecodeSettled(again)
		if !ok || b2 != base || !slices.Equal(s2, spans) {
			t.Fatalf("%q: round trip changed it", s)
		}
	})
}
