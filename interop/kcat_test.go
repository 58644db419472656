package interop

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// kafkaTopic creates a topic of one partition, deleted when t ends.
func kafkaTopic(t *testing.T, brokers []string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	topic := name(t)
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.DeleteTopics(context.Background(), topic) })
	return topic
}

// TestFerryReadsKcat: kcat (librdkafka) produces records with headers
// that ferry never writes (a repeated name, two ferry-id headers, an
// empty last ferry-id, binary, empty and null values, none at all); a
// ferry group reads them as kafka's package doc says. Then kcat reads a
// record that ferry published: key, ferry-id, headers and payload.
func TestFerryReadsKcat(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	kcat := client(t, "kcat")
	topic := kafkaTopic(t, brokers)
	b := strings.Join(brokers, ",")
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bin := "\xff\xfe\x80\x01" // not UTF-8; kcat takes it from argv, so no NUL
	produce := func(args ...string) {
		run(t, "kcat produce", "", kcat, append([]string{"-b", b, "-P", "-t", topic, "-p", "0"}, args...)...)
	}
	produce("-k", "key-1", "-H", "case=headers", "-H", "h=1", "-H", "other=x", "-H", "h=2",
		"-H", "ferry-id=first", "-H", "ferry-id=second", "-H", "bin="+bin, "-H", "empty=", "-H", "null",
		file("1", "payload 1"))
	produce("-H", "case=empty-last-id", "-H", "ferry-id=kept-not", "-H", "ferry-id=", file("2", "payload 2"))
	produce(file("3", "\x00\x01binary\xff")) // no key, no headers

	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup("ferry-"+topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	c := newCollector()
	subscribe(t, sub, topic, c.handle)
	got := byHeader(t, c.waitN(t, 3), "case")

	m := got["headers"]
	wantH := map[string]string{"case": "headers", "h": "2", "other": "x", "bin": bin, "empty": "", "null": ""}
	if m == nil || m.ID != "second" || m.Key != "key-1" || string(m.Payload) != "payload 1" || !maps.Equal(m.Headers, wantH) {
		t.Errorf("record 1: %+v\n headers %q\n want ID second, Key key-1, headers %q", m, m.Headers, wantH)
	}
	if m := got["empty-last-id"]; m == nil || m.ID != topic+"-0-1" || !maps.Equal(m.Headers, map[string]string{"case": "empty-last-id"}) {
		t.Errorf("record 2 (last ferry-id empty): %+v, want ID %s-0-1 and no ferry-id header", m, topic)
	}
	if m := got[""]; m == nil || m.ID != topic+"-0-2" || m.Key != "" || string(m.Payload) != "\x00\x01binary\xff" || m.Headers != nil {
		t.Errorf("record 3 (no key, no headers): %+v, want ID %s-0-2", m, topic)
	}
	for _, m := range got {
		if m.Time.IsZero() || m.Delivery.Topic != topic || m.Delivery.Partition != 0 {
			t.Errorf("delivery of %q: Time %v %+v", m.ID, m.Time, m.Delivery)
		}
	}

	// ferry -> kcat: the record that ferry writes, as another client reads it.
	pub, err := kafka.NewPublisher(brokers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	out := &message.Message{ID: "ferry-1", Key: "key-2", Payload: []byte(`{"from":"ferry"}`), Headers: map[string]string{"case": "ferry", "bin": bin}}
	if err := pub.Publish(context.Background(), topic, out); err != nil {
		t.Fatal(err)
	}
	raw := run(t, "kcat consume", "", kcat, "-b", b, "-C", "-t", topic, "-p", "0", "-o", "3", "-c", "1", "-e", "-q", "-J")
	if len(raw) != 1 {
		t.Fatalf("kcat printed %d lines, want 1 record", len(raw))
	}
	var rec struct {
		Key     string    `json:"key"`
		Payload string    `json:"payload"`
		TS      int64     `json:"ts"`
		Headers []*string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(raw[0]), &rec); err != nil {
		t.Fatal(err)
	}
	hs := map[string]string{}
	for i := 0; i+1 < len(rec.Headers); i += 2 {
		if rec.Headers[i] != nil && rec.Headers[i+1] != nil {
			hs[*rec.Headers[i]] = *rec.Headers[i+1]
		}
	}
	if rec.Key != "key-2" || rec.Payload != `{"from":"ferry"}` || rec.TS != out.Time.UnixMilli() || hs[kafka.HeaderID] != "ferry-1" || hs["case"] != "ferry" || len(hs) != 3 {
		t.Errorf("kcat read ferry's record as %+v, headers %q", rec, hs)
	}
}
