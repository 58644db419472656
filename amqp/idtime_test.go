package amqp

import (
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

func TestIDMillis(t *testing.T) {
	at := time.UnixMilli(1700000000456)
	id := "018bcfe5-69c8-7abc-9def-0123456789ab" // 0x018bcfe569c8 = 1700000000456
	if ms, ok := idMillis(id); !ok || ms != at.UnixMilli() {
		t.Fatalf("idMillis(%q) = %d, %v; want %d", id, ms, ok, at.UnixMilli())
	}
	if ms, ok := idMillis(strings.ToUpper(id)); !ok || ms != at.UnixMilli() {
		t.Fatalf("upper case: %d, %v", ms, ok)
	}
	for _, bad := range []string{
		"",
		"i",
		"018bcfe5-69c8-4abc-9def-0123456789ab",  // version 4
		"018bcfe5-69c8-7abc-cdef-0123456789ab",  // not the RFC 9562 variant
		"018bcfe5-69c8-7abc-9def-0123456789a",   // short
		"018bcfe5-69c8-7abc-9def-0123456789abc", // long
		"018bcfe5x69c8-7abc-9def-0123456789ab",  // no dash
		"018bcfg5-69c8-7abc-9def-0123456789ab",  // not hex
		"018bcfe5-69c8-7abc-9def-0123456789ag",  // not hex in the random part
		"{18bcfe5-69c8-7abc-9def-0123456789ab}",
	} {
		if ms, ok := idMillis(bad); ok {
			t.Errorf("idMillis(%q) = %d, true; want false", bad, ms)
		}
	}
	// Every ID that message.NewID makes carries the millisecond it was made in.
	before := time.Now().UnixMilli()
	got := message.NewID()
	after := time.Now().UnixMilli()
	if ms, ok := idMillis(got); !ok || ms < before || ms > after+1 {
		t.Fatalf("idMillis(NewID() = %q) = %d, %v; made between %d and %d", got, ms, ok, before, after)
	}
}

// TestTimeHeaderOnlyWhenNotInID: ferry writes ferry-time only when Time is
// not the millisecond of its UUIDv7 ID, and the subscriber gets Time back to
// the millisecond either way, from the header (also as older ferry
// publishers always sent it) or from the ID.
func TestTimeHeaderOnlyWhenNotInID(t *testing.T) {
	cfg, err := newSubscriberConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := "018bcfe5-69c8-7abc-9def-0123456789ab"
	idTime := time.UnixMilli(1700000000456)
	cases := []struct {
		name       string
		id         string
		at         time.Time
		wantHeader bool
	}{
		{"time of the id", id, idTime, false},
		{"time of the id, sub-millisecond", id, idTime.Add(999 * time.Microsecond), false},
		{"a millisecond later", id, idTime.Add(time.Millisecond), true},
		{"same second, other millisecond", id, time.UnixMilli(1700000000001), true},
		{"an hour earlier", id, idTime.Add(-time.Hour), true},
		{"not a uuidv7", "order-17", idTime, true},
		{"before 1970", id, time.UnixMilli(-1500), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &message.Message{ID: c.id, Payload: []byte("p"), Time: c.at}
			pub := cfg.publishing(m)
			v, has := pub.Headers[TimeHeader]
			if has != c.wantHeader {
				t.Fatalf("ferry-time written: %v (%v), want %v", has, v, c.wantHeader)
			}
			if has && v != c.at.UnixMilli() {
				t.Fatalf("ferry-time %v, want %d", v, c.at.UnixMilli())
			}
			d := deliveryOf(pub)
			d.Timestamp = time.Unix(pub.Timestamp.Unix(), 0) // the wire has whole seconds
			got := cfg.toMessage("t", "g", d)
			if want := time.UnixMilli(c.at.UnixMilli()); !got.Time.Equal(want) {
				t.Fatalf("delivered Time %v, want %v", got.Time, want)
			}
			if _, ok := got.Headers[TimeHeader]; ok {
				t.Fatalf("ferry-time left in Headers")
			}
		})
	}
}

// TestTimeFromOlderAndForeignPublishers: deliveries of older ferry versions
// (ferry-time always set) and of other producers decode as before.
func TestTimeFromOlderAndForeignPublishers(t *testing.T) {
	cfg, err := newSubscriberConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := "018bcfe5-69c8-7abc-9def-0123456789ab" // millisecond 1700000000456
	sec := time.Unix(1700000000, 0)
	cases := []struct {
		name string
		d    amqp091.Delivery
		want time.Time
	}{
		{"older ferry: header and id agree", amqp091.Delivery{MessageId: id, Timestamp: sec, Headers: amqp091.Table{TimeHeader: int64(1700000000456)}}, time.UnixMilli(1700000000456)},
		{"older ferry: header differs from the id", amqp091.Delivery{MessageId: id, Timestamp: time.Unix(1600000000, 0), Headers: amqp091.Table{TimeHeader: int64(1600000000123)}}, time.UnixMilli(1600000000123)},
		{"foreign: timestamp only", amqp091.Delivery{MessageId: "m-1", Timestamp: sec}, sec},
		{"foreign: nothing", amqp091.Delivery{MessageId: "m-1"}, time.Time{}},
		{"foreign: uuidv7 id, no timestamp", amqp091.Delivery{MessageId: id}, time.Time{}},
		{"foreign: uuidv7 id of another second", amqp091.Delivery{MessageId: id, Timestamp: sec.Add(time.Second)}, sec.Add(time.Second)},
		{"foreign: uuidv7 id in the timestamp's second", amqp091.Delivery{MessageId: id, Timestamp: sec}, time.UnixMilli(1700000000456)},
		{"foreign: ferry-time not a number", amqp091.Delivery{MessageId: id, Timestamp: sec, Headers: amqp091.Table{TimeHeader: "yesterday"}}, sec},
		{"foreign: no message id", amqp091.Delivery{Timestamp: sec}, sec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := cfg.toMessage("t", "g", &c.d)
			if !got.Time.Equal(c.want) || got.Time.IsZero() != c.want.IsZero() {
				t.Fatalf("Time %v, want %v", got.Time, c.want)
			}
		})
	}
	// MessageFromDelivery (other clients' deliveries) maps alike.
	d := &amqp091.Delivery{MessageId: id, Timestamp: sec}
	if got := MessageFromDelivery("t", "g", d); !got.Time.Equal(time.UnixMilli(1700000000456)) {
		t.Fatalf("MessageFromDelivery Time %v", got.Time)
	}
}
