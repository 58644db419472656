package offsets

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// Span is a range of positions, First to Last inclusive, that are all
// settled (or were never handed out: a Kafka offset with no record).
type Span struct {
	First, Last int64
}

// SettledPrefix marks a commit metadata string as ferry's encoding of the
// settled positions above a commit point, version 1. Metadata without it
// (a Java consumer's, franz-go's member ID, empty) is not ferry's and is
// ignored by DecodeSettled.
const SettledPrefix = "ferry1:"

// EncodeSettled encodes the commit point base and the settled spans above
// it (sorted, disjoint, separated by at least one unsettled position,
// every one above base) into a string of at most limit bytes: the
// SettledPrefix, then the unpadded URL-safe base64 of the uvarints base,
// and for each span its distance from the end of the one before (from
// base for the first, always at least 1) and its length minus one. It
// encodes as many spans, from the first, as fit, and returns how many
// that is: fewer than len(spans) means the rest did not fit (their
// positions are then replayed, never skipped). With no span, or when not
// even the prefix and base fit, it returns "" and 0.
func EncodeSettled(base int64, spans []Span, limit int) (string, int) {
	if len(spans) == 0 || base < 0 {
		return "", 0
	}
	room := base64.RawURLEncoding.DecodedLen(limit - len(SettledPrefix))
	raw := binary.AppendUvarint(make([]byte, 0, min(room, 64)), uint64(base))
	if len(raw) > room {
		return "", 0
	}
	n, prev := 0, base
	for _, s := range spans {
		if s.First <= prev || s.Last < s.First {
			break // not sorted above base: encode what came before
		}
		l := len(raw)
		raw = binary.AppendUvarint(raw, uint64(s.First-prev))
		raw = binary.AppendUvarint(raw, uint64(s.Last-s.First))
		if len(raw) > room {
			raw = raw[:l]
			break
		}
		n, prev = n+1, s.Last+1
	}
	if n == 0 {
		return "", 0
	}
	return SettledPrefix + base64.RawURLEncoding.EncodeToString(raw), n
}

// DecodeSettled decodes a string written by EncodeSettled. It reports
// false for anything else: another client's metadata, a later version,
// a damaged encoding; the caller then skips nothing.
func DecodeSettled(s string) (base int64, spans []Span, ok bool) {
	rest, found := strings.CutPrefix(s, SettledPrefix)
	if !found {
		return 0, nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return 0, nil, false
	}
	u, n := binary.Uvarint(raw)
	if n <= 0 || u > 1<<62 {
		return 0, nil, false
	}
	base, raw = int64(u), raw[n:]
	prev := base
	for len(raw) > 0 {
		d, n1 := binary.Uvarint(raw)
		if n1 <= 0 || d == 0 || d > 1<<62 {
			return 0, nil, false
		}
		raw = raw[n1:]
		l, n2 := binary.Uvarint(raw)
		if n2 <= 0 || l > 1<<62 {
			return 0, nil, false
		}
		raw = raw[n2:]
		first := prev + int64(d)
		last := first + int64(l)
		if first < prev || last < first || last >= 1<<62 {
			return 0, nil, false // overflow
		}
		spans = append(spans, Span{First: first, Last: last})
		prev = last + 1
	}
	if len(spans) == 0 {
		return 0, nil, false
	}
	return base, spans, true
}

// Beyond calls fn for each item appended after the settled prefix, in
// order, with whether it is settled; the items of a stale part of a run
// (Append's from) are not visited.
func (l *Log[T]) Beyond(fn func(item *T, settled bool)) {
	for _, r := range l.runs {
		for i := r.head; i < len(r.Items); i++ {
			fn(&r.Items[i], r.done[i])
		}
	}
}

// Settled reports whether item i of r is settled.
func (r *Run[T]) Settled(i int) bool { return r.done[i] }
