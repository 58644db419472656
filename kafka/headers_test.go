package kafka

import (
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/message"
)

// TestForeignRecordHeaders: records as other Kafka clients write them
// (kcat, the Java client) become messages as the package doc says: a
// repeated header name keeps its last value, ferry-id included, which is
// the ID and never a header; an empty or missing ferry-id gives the
// record's position; binary and null values are kept as bytes.
func TestForeignRecordHeaders(t *testing.T) {
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	cases := []struct {
		name    string
		headers []kgo.RecordHeader
		id      string
		want    map[string]string
	}{
		{"repeated name", []kgo.RecordHeader{h("h", "1"), h("other", "x"), h("h", "2"), h("h", "3")}, "t-0-7",
			map[string]string{"h": "3", "other": "x"}},
		{"two ferry-id", []kgo.RecordHeader{h(HeaderID, "first"), h("a", "b"), h(HeaderID, "second")}, "second",
			map[string]string{"a": "b"}},
		{"ferry-id last and empty", []kgo.RecordHeader{h(HeaderID, "first"), h(HeaderID, "")}, "t-0-7", nil},
		{"ferry-id only empty", []kgo.RecordHeader{h(HeaderID, ""), h("a", "")}, "t-0-7", map[string]string{"a": ""}},
		{"binary and null values", []kgo.RecordHeader{h("bin", "\x00\xff\xfe"), {Key: "null"}, h("", "empty name")}, "t-0-7",
			map[string]string{"bin": "\x00\xff\xfe", "null": "", "": "empty name"}},
		{"no headers", nil, "t-0-7", nil},
	}
	sub := &subscription{group: "g"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &kgo.Record{Topic: "t", Partition: 0, Offset: 7, Key: []byte("k"), Value: []byte("v"), Headers: c.headers}
			m := &sub.build([]*kgo.Record{r}, nil).run.Items[0].msg
			if m.ID != c.id || m.Key != "k" || string(m.Payload) != "v" {
				t.Errorf("ID %q Key %q Payload %q, want ID %q", m.ID, m.Key, m.Payload, c.id)
			}
			if !maps.Equal(m.Headers, c.want) {
				t.Errorf("headers %q, want %q", m.Headers, c.want)
			}
			// Published again, the record has one ferry-id (the ID) and
			// each header once, with the same bytes.
			out := toRecords("t", []*message.Message{m})[0]
			seen := map[string]int{}
			for _, oh := range out.Headers {
				seen[oh.Key]++
				if oh.Key == HeaderID && string(oh.Value) != c.id || oh.Key != HeaderID && string(oh.Value) != c.want[oh.Key] {
					t.Errorf("published again: header %q = %q", oh.Key, oh.Value)
				}
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("published again: header %q %d times", k, n)
				}
			}
			if len(seen) != len(c.want)+1 {
				t.Errorf("published again: headers %v, want %d", out.Headers, len(c.want)+1)
			}
		})
	}
}
