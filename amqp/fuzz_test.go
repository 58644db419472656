package amqp

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// fuzzValue builds an AMQP header value of the type sel picks, from s and
// n: every type a table can carry, nested tables and arrays (x-death)
// included.
func fuzzValue(sel byte, s string, n int64) any {
	switch sel % 13 {
	case 0:
		return s
	case 1:
		return []byte(s)
	case 2:
		return n
	case 3:
		return int32(n)
	case 4:
		return n%2 == 0
	case 5:
		return math.Float64frombits(uint64(n)) // NaN and infinities too
	case 6:
		return time.Unix(n%(1<<40), 0)
	case 7:
		return amqp091.Decimal{Scale: uint8(n), Value: int32(n >> 8)}
	case 8:
		return nil
	case 9:
		return amqp091.Table{s: n, "nested": amqp091.Table{"b": []byte(s)}}
	case 10:
		return []any{s, n, nil, float32(n), []any{[]byte(s)}}
	case 11:
		return []any{amqp091.Table{"count": n, "reason": s, "time": time.Unix(n%(1<<40), 0), "routing-keys": []any{s}}}
	default:
		return int8(n)
	}
}

// FuzzDeliveryToMessage feeds deliveries as any AMQP producer could send
// them (header values of every AMQP type, non-UTF-8 strings, ferry's own
// headers with values of the wrong type, huge bodies) to the subscriber's
// conversion, and checks that it never panics, keeps every header (as
// HeaderString renders it) but table entries named like property headers,
// the body and the id, counts attempts from 1, that the message can be
// published again and survives the trip back through the publisher's
// mapping.
func FuzzDeliveryToMessage(f *testing.F) {
	f.Add("id", []byte("body"), "h", byte(0), "v", int64(1), "n", byte(2), "w", int64(7), false, int64(1700000000))
	f.Add("", []byte(nil), DefaultKeyHeader, byte(2), "", int64(42), TimeHeader, byte(0), "not a number", int64(0), true, int64(0))
	f.Add("\xff\xfe", []byte{0, 0xff}, "x-death", byte(11), "\xc3\x28", int64(-1), deliveryCountHeader, byte(0), "3", int64(3), true, int64(-1))
	f.Add("id", bytes.Repeat([]byte{0xab}, 1<<20), "dec", byte(7), "s", int64(math.MaxInt64), "f", byte(5), "s", int64(0x7ff8000000000001), false, int64(1))
	f.Add("id", []byte("b"), "", byte(9), strings.Repeat("k", 300), int64(5), "", byte(10), "", int64(5), false, int64(5))
	f.Add("id", []byte("b"), TypeHeader, byte(0), "t", int64(0), PriorityHeader, byte(3), "", int64(300), false, int64(0))
	cfg, err := newSubscriberConfig(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string, body []byte, k1 string, sel1 byte, s1 string, n1 int64, k2 string, sel2 byte, s2 string, n2 int64, redelivered bool, ts int64) {
		h := amqp091.Table{k1: fuzzValue(sel1, s1, n1), k2: fuzzValue(sel2, s2, n2)}
		d := &amqp091.Delivery{MessageId: id, Body: body, Headers: h, Redelivered: redelivered, DeliveryTag: 9}
		if ts != 0 {
			d.Timestamp = time.Unix(ts%(1<<40), 0)
		}
		m := cfg.toMessage("t", "g", d)
		wantID := id
		if id == "" {
			wantID = DerivedID("t", d) // stable: computed again from the same delivery
		}
		if m.ID != wantID || !strings.HasPrefix(m.ID, ForeignIDPrefix) && id == "" || !bytes.Equal(m.Payload, body) {
			t.Fatalf("id %q payload %d bytes, want %q and %d bytes", m.ID, len(m.Payload), wantID, len(body))
		}
		if m.Delivery.Attempt < 1 || redelivered && m.Delivery.Attempt < 2 {
			t.Fatalf("attempt %d (redelivered %v)", m.Delivery.Attempt, redelivered)
		}
		wantKey := ""
		if v, ok := h[DefaultKeyHeader]; ok {
			wantKey = HeaderString(v)
		}
		if m.Key != wantKey {
			t.Fatalf("key %q, want %q", m.Key, wantKey)
		}
		for k, v := range h {
			got, ok := m.Headers[k]
			switch {
			case k == DefaultKeyHeader:
				if ok {
					t.Fatalf("key header %q left in Headers", k)
				}
			case k == TimeHeader && !ok:
				// a number: it became Time
			case isPropHeader(k):
				// A table entry with a property header's name is dropped;
				// the delivery sets no property but the delivery mode
				// (0: not persistent).
				if want := map[bool]string{true: "1"}[k == DeliveryModeHeader]; got != want {
					t.Fatalf("table entry %q: header %q (present %v), want %q", k, got, ok, want)
				}
			case !ok || got != HeaderString(v):
				t.Fatalf("header %q = %q (present %v), want %q", k, got, ok, HeaderString(v))
			}
		}
		if a, b := HeaderString(h[k1]), HeaderString(h[k1]); a != b {
			t.Fatalf("HeaderString is not deterministic for %#v", h[k1])
		}

		// What a broker can deliver can be published again as it is.
		if len(id) <= maxNameLen && len(k1) <= maxNameLen && len(k2) <= maxNameLen {
			if err := cfg.checkMessage(0, 1, m); err != nil {
				t.Fatalf("delivered message cannot be published: %v", err)
			}
		}
		pub := cfg.publishing(m)
		back := cfg.toMessage("t", "g", deliveryOf(pub))
		if back.ID != m.ID || back.Key != m.Key || !bytes.Equal(back.Payload, m.Payload) || !back.Time.Equal(m.Time) {
			t.Fatalf("round trip changed the message: %+v -> %+v", m, back)
		}
		for k, v := range m.Headers {
			if k != TimeHeader && back.Headers[k] != v {
				t.Fatalf("round trip changed header %q: %q -> %q", k, v, back.Headers[k])
			}
		}
	})
}

// FuzzValidateTopic checks ValidateTopic against the exchange-name rules
// written out plainly: it never panics, accepts exactly the legal names,
// and its errors match message.ErrInvalidTopic.
func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"orders", "a.b_c-D9:x", "", "amq.direct", "amq", "has space", "ünïcode", "a/b", strings.Repeat("x", 255), strings.Repeat("x", 256), "\x00", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		legal := len(topic) >= 1 && len(topic) <= 255 && !strings.HasPrefix(topic, "amq.")
		for _, c := range []byte(topic) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
				legal = false
			}
		}
		err := ValidateTopic(topic)
		if legal != (err == nil) {
			t.Fatalf("ValidateTopic(%q) = %v, legal as an exchange name: %v", topic, err, legal)
		}
		if err != nil && !errors.Is(err, message.ErrInvalidTopic) {
			t.Fatalf("ValidateTopic(%q) = %v, does not match message.ErrInvalidTopic", topic, err)
		}
	})
}
