package message

import (
	"iter"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"
)

// idClock holds the last issued (millisecond << 12 | counter). Adding one
// past a millisecond's 4096 counter values carries into the millisecond
// field, which is the "borrow the next millisecond" rule of RFC 9562.
var idClock atomic.Uint64

// idLen is the length of the canonical UUID form.
const idLen = 36

// NewID returns a new time-ordered identifier: a UUID version 7 (RFC 9562)
// in its canonical 36-character form. IDs made in one process sort by
// creation time, including within a millisecond (a 12-bit counter seeded
// randomly at each new millisecond). The random bits come from math/rand/v2's
// ChaCha8-based generator.
func NewID() string {
	var b strings.Builder
	newIDs(&b, time.Now().UnixMilli(), 1)
	return b.String()
}

// NewIDs returns an iterator over n new IDs, as n calls of NewID would
// make them but cheaper: they share one clock reading, one reservation of
// the counter and one string, and they come in sort order. Publishers use
// it to fill in a batch's IDs:
//
//	for id := range message.NewIDs(len(batch)) { ... }
//
// The IDs are made when the iteration starts; stopping early discards the
// rest.
func NewIDs(n int) iter.Seq[string] {
	return func(yield func(string) bool) {
		if n <= 0 {
			return
		}
		var b strings.Builder
		newIDs(&b, time.Now().UnixMilli(), n)
		ids := b.String()
		for i := range n {
			if !yield(ids[i*idLen : (i+1)*idLen]) {
				return
			}
		}
	}
}

// reserveIDs takes n consecutive clock values for the millisecond ms with
// one compare-and-swap and returns the first.
func reserveIDs(ms int64, n int) uint64 {
	for {
		old := idClock.Load()
		start := old + 1
		if uint64(ms) > old>>12 {
			start = uint64(ms)<<12 | uint64(rand.Uint32()&0x01ff)
		}
		if idClock.CompareAndSwap(old, start+uint64(n)-1) {
			return start
		}
	}
}

// newIDs writes n IDs for the millisecond ms to b, back to back. Callers
// making many at once share one clock reading and one string.
func newIDs(b *strings.Builder, ms int64, n int) {
	b.Grow(n * idLen)
	v := reserveIDs(ms, n)
	for i := range n {
		var s [idLen]byte
		formatID(&s, v+uint64(i), rand.Uint64())
		b.Write(s[:])
	}
}

// hexPairs holds the two lower-case hex digits of every byte value.
const hexPairs = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
	"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" +
	"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f" +
	"606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" +
	"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f" +
	"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf" +
	"c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf" +
	"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"

// idDigits is where each of the 16 UUID bytes goes in the 36-character
// form (the dashes sit at 8, 13, 18 and 23).
var idDigits = [16]uint8{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// formatID writes the UUIDv7 for clock value v (millisecond << 12 |
// counter) and random bits r to s.
func formatID(s *[idLen]byte, v, r uint64) {
	ms, ctr := v>>12, v&0x0fff
	var u [16]byte
	u[0] = byte(ms >> 40)
	u[1] = byte(ms >> 32)
	u[2] = byte(ms >> 24)
	u[3] = byte(ms >> 16)
	u[4] = byte(ms >> 8)
	u[5] = byte(ms)
	u[6] = 0x70 | byte(ctr>>8)&0x0f
	u[7] = byte(ctr)
	u[8] = 0x80 | byte(r>>56)&0x3f
	for i := 9; i < 16; i++ {
		u[i] = byte(r >> (8 * (15 - i)))
	}
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	for i, b := range u {
		j := idDigits[i]
		s[j], s[j+1] = hexPairs[2*int(b)], hexPairs[2*int(b)+1]
	}
}
