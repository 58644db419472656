package kafka

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/message"
)

// FuzzRecordToMessage feeds records as any Kafka producer could write them
// (arbitrary key, value and header bytes, non-UTF-8, empty or duplicate
// header keys, ferry-id headers of any content) to the subscriber's
// conversion, and checks that it never panics, keeps key and payload
// byte for byte, lets the last of duplicate headers win, ferry-id
// included (the ID, never a header; the record's position when it is
// empty or missing), and that a converted message survives the trip back
// through the publisher's mapping unchanged.
func FuzzRecordToMessage(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), "h", []byte("x"), "h", []byte("y"), []byte("id-1"), true)
	f.Add([]byte(nil), []byte(nil), "", []byte(nil), "", []byte(nil), []byte(nil), false)
	f.Add([]byte{0xff, 0xfe}, []byte{0, 1, 2}, "\xc3\x28", []byte{0x80}, HeaderID, []byte{0xff}, []byte(""), true)
	f.Add([]byte("k"), bytes.Repeat([]byte("v"), 1<<20), "big", bytes.Repeat([]byte{0xee}, 256<<10), "h2", []byte("z"), []byte("id"), false)
	sub := &subscription{group: "g"}
	f.Fuzz(func(t *testing.T, key, value []byte, k1 string, v1 []byte, k2 string, v2 []byte, id []byte, withID bool) {
		r := &kgo.Record{Topic: "t", Partition: 3, Offset: 42, Key: key, Value: value, Timestamp: time.UnixMilli(1_700_000_000_000)}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k1, Value: v1}, kgo.RecordHeader{Key: k2, Value: v2})
		if withID {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderID, Value: id})
		}
		// A second record in the same fetch: the batch's keys and IDs
		// share one string, so a slicing slip shows up in either.
		r2 := &kgo.Record{Topic: "t", Partition: 3, Offset: 43, Key: []byte("next"), Value: []byte("v2")}
		b := sub.build([]*kgo.Record{r, r2}, nil)
		m2 := &b.run.Items[1].msg
		if m2.Key != "next" || m2.ID != "t-3-43" || string(m2.Payload) != "v2" {
			t.Fatalf("second record of the fetch: key %q ID %q payload %q", m2.Key, m2.ID, m2.Payload)
		}
		m := &b.run.Items[0].msg
		if m.Key != string(key) || !bytes.Equal(m.Payload, value) {
			t.Fatalf("key %q payload %d bytes, want %q and %d bytes", m.Key, len(m.Payload), key, len(value))
		}
		want := map[string]string{}
		wantID := "t-3-42"
		for _, h := range r.Headers {
			if h.Key == HeaderID {
				if wantID = "t-3-42"; len(h.Value) > 0 {
					wantID = string(h.Value)
				}
				continue
			}
			want[h.Key] = string(h.Value)
		}
		if m.ID != wantID {
			t.Fatalf("ID %q, want %q (the last %s header, t-3-42 when it is empty or missing)", m.ID, wantID, HeaderID)
		}
		for k, v := range want {
			if m.Headers[k] != v {
				t.Fatalf("header %q = %q, want %q (the last of its values)", k, m.Headers[k], v)
			}
		}
		for k := range m.Headers {
			if _, ok := want[k]; !ok {
				t.Fatalf("header %q appeared from nowhere: %q", k, m.Headers)
			}
		}
		if d := m.Delivery; d.Topic != "t" || d.Partition != 3 || d.Offset != 42 || d.Group != "g" {
			t.Fatalf("delivery %+v", d)
		}
		// Published alone (one allocation) and in a batch (shared arrays).
		alone := sub.build(toRecords("t", []*message.Message{m}), nil).run.Items[0].msg
		inBatch := sub.build(toRecords("t", []*message.Message{m2, m, m2}), nil).run.Items[1].msg
		for _, back := range []*message.Message{&alone, &inBatch} {
			if back.ID != m.ID || back.Key != m.Key || !bytes.Equal(back.Payload, m.Payload) || !back.Time.Equal(m.Time) {
				t.Fatalf("round trip changed the message: %+v -> %+v", m, back)
			}
			for k, v := range want {
				if back.Headers[k] != v {
					t.Fatalf("round trip changed header %q: %q -> %q", k, v, back.Headers[k])
				}
			}
		}
	})
}

// FuzzValidateTopic checks ValidateTopic against Kafka's rules written
// out plainly: it never panics, accepts exactly the legal names, and its
// errors match message.ErrInvalidTopic.
func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"orders", "a.b_c-D9", "", ".", "..", "...", "has space", "ünïcode", "a/b", strings.Repeat("x", 249), strings.Repeat("x", 250), "\x00", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		legal := len(topic) >= 1 && len(topic) <= 249 && topic != "." && topic != ".."
		for _, c := range []byte(topic) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				legal = false
			}
		}
		err := ValidateTopic(topic)
		if legal != (err == nil) {
			t.Fatalf("ValidateTopic(%q) = %v, legal by Kafka's rules: %v", topic, err, legal)
		}
		if err != nil && !errors.Is(err, message.ErrInvalidTopic) {
			t.Fatalf("ValidateTopic(%q) = %v, does not match message.ErrInvalidTopic", topic, err)
		}
	})
}
