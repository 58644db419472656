package message

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// idClock holds the last issued (millisecond << 12 | counter). Adding one
// past a millisecond's 4096 counter values carries into the millisecond
// field, which is the "borrow the next millisecond" rule of RFC 9562.
var idClock atomic.Uint64

// NewID returns a new time-ordered identifier: a UUID version 7 (RFC 9562)
// in its canonical 36-character form. IDs made in one process sort by
// creation time, including within a millisecond (a 12-bit counter seeded
// randomly at each new millisecond). The random bits come from math/rand/v2's
// ChaCha8-based generator.
func NewID() string { return newID(time.Now().UnixMilli()) }

// newID makes an ID for the millisecond ms (callers making many at once
// read the clock once).
func newID(ms int64) string {
	var v uint64
	for {
		old := idClock.Load()
		if uint64(ms) > old>>12 {
			v = uint64(ms)<<12 | uint64(rand.Uint32()&0x01ff)
		} else {
			v = old + 1
		}
		if idClock.CompareAndSwap(old, v) {
			break
		}
	}
	ms, ctr := int64(v>>12), v&0x0fff

	var u [16]byte
	u[0] = byte(ms >> 40)
	u[1] = byte(ms >> 32)
	u[2] = byte(ms >> 24)
	u[3] = byte(ms >> 16)
	u[4] = byte(ms >> 8)
	u[5] = byte(ms)
	u[6] = 0x70 | byte(ctr>>8)&0x0f
	u[7] = byte(ctr)
	r := rand.Uint64()
	u[8] = 0x80 | byte(r>>56)&0x3f
	for i := 9; i < 16; i++ {
		u[i] = byte(r >> (8 * (15 - i)))
	}

	const hexdigits = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexdigits[b>>4], hexdigits[b&0x0f]
		j += 2
	}
	return string(s[:])
}
