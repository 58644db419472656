package amqp

import "time"

// idMillis returns the Unix millisecond that id carries when it is a
// UUID version 7 in its canonical 36-character form (lower- or upper-case
// hex, RFC 9562 variant), as message.NewID makes them.
func idMillis(id string) (int64, bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' || id[14] != '7' {
		return 0, false
	}
	switch id[19] {
	case '8', '9', 'a', 'b', 'A', 'B':
	default:
		return 0, false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		if hexVal(id[i]) < 0 {
			return 0, false
		}
	}
	var ms int64
	for _, i := range [12]int{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12} {
		ms = ms<<4 | int64(hexVal(id[i]))
	}
	return ms, true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// timeInID reports whether a message with this id and time needs no
// ferry-time header: the id is a UUIDv7 of t's millisecond, so the
// subscriber recovers t (to the millisecond, as the header has it) from
// the id and the timestamp property (see timeFromID).
func timeInID(id string, t time.Time) bool {
	ms, ok := idMillis(id)
	return ok && ms == t.UnixMilli()
}

// timeFromID returns the Time of a delivery without a ferry-time header:
// the millisecond of its UUIDv7 message_id when that lies in the second of
// its timestamp property (what ferry's publisher sends when Time is the
// ID's millisecond), otherwise the timestamp property itself (whole
// seconds; the zero Time when it is not set).
func timeFromID(id string, ts time.Time) time.Time {
	if ts.IsZero() {
		return time.Time{}
	}
	if ms, ok := idMillis(id); ok && ms/1000 == ts.Unix() {
		return time.UnixMilli(ms)
	}
	return ts
}
