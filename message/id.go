package message

import (
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"
)

var idState struct {
	sync.Mutex
	lastMs  int64
	counter uint16 // 12-bit rand_a counter, monotonic within a millisecond
}

// NewID returns a new time-ordered identifier: a UUID version 7 (RFC 9562)
// in its canonical 36-character form. IDs made in one process sort by
// creation time, including within a millisecond (a 12-bit counter seeded
// randomly at each new millisecond). The random bits come from math/rand/v2's
// ChaCha8-based generator.
func NewID() string { return newID(time.Now().UnixMilli()) }

// newID makes an ID for the millisecond ms (callers making many at once
// read the clock once).
func newID(ms int64) string {
	idState.Lock()
	if ms <= idState.lastMs {
		ms = idState.lastMs
		idState.counter++
		if idState.counter > 0x0fff {
			// Counter exhausted: borrow the next millisecond.
			ms++
			idState.counter = uint16(rand.Uint32() & 0x01ff)
		}
	} else {
		idState.counter = uint16(rand.Uint32() & 0x01ff)
	}
	idState.lastMs = ms
	ctr := idState.counter
	idState.Unlock()

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

	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}
