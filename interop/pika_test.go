package interop

import (
	"context"
	"maps"
	neturl "net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestFerryReadsPika: Python's pika publishes messages with header values
// of every type it encodes and with every property (interop/pika/publish.py)
// to the topic's exchange; a ferry group receives each with its headers
// converted as amqp's package doc says, and can publish each again as it
// is, unchanged.
func TestFerryReadsPika(t *testing.T) {
	url := testenv.NeedAMQP(t)
	python := client(t, "pika")
	ctx := context.Background()
	topic := name(t)
	deleteGroup(t, url, topic, "ferry")
	sub, err := amqp.NewSubscriber(url, amqp.WithGroup("ferry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	if err := sub.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	subscribe(t, sub, topic, c.handle)

	sent := run(t, "pika publish", "SENT", python, filepath.Join("pika", "publish.py"), url, topic, "sensor.reading")
	got := byHeader(t, c.waitN(t, len(sent)), "case")
	if len(got) != 4 {
		t.Fatalf("got cases %v, want 4", slices.Collect(maps.Keys(got)))
	}

	when := "2024-01-02T03:04:05Z"
	want := map[string]struct {
		id, key string
		time    time.Time
		payload string
		headers map[string]string
	}{
		"all-types": {"pika-1", "", time.Unix(1700000000, 0), "reading 1", map[string]string{
			"case":       "all-types",
			"int":        "42",
			"negative":   "-7",
			"big":        "1099511627776",
			"bool-true":  "true",
			"bool-false": "false",
			"decimal":    "12.5", // pika normalizes Decimal("12.50")
			"str":        "héllo",
			"bytes":      "\x00\xffraw",
			"timestamp":  when,
			"table":      `{"a":1,"b":"two","nested":{"c":true}}`,
			"array":      `[1,"x",false,null,["y"]]`,
			"void":       "",
			"x-death":    `[{"count":3,"queue":"q","reason":"rejected","routing-keys":["rk"],"time":"` + when + `"}]`,

			amqp.ContentTypeHeader:     "text/plain",
			amqp.ContentEncodingHeader: "utf-8",
			amqp.CorrelationIDHeader:   "corr-py",
			amqp.ReplyToHeader:         "py.replies",
			amqp.TypeHeader:            "sensor.reading",
			amqp.AppIDHeader:           "pika-interop",
			amqp.UserIDHeader:          urlUser(t, url), // publish.py sets the connection's user
			amqp.PriorityHeader:        "3",
			amqp.ExpirationHeader:      "60000",
		}},
		"bare": {"", "", time.Time{}, "\x00\x01\xfe\xff", map[string]string{
			"case": "bare", amqp.DeliveryModeHeader: "1",
		}},
		"ferry-headers": {"", "sensor-9", time.UnixMilli(1700000000123), "{}", map[string]string{
			"case": "ferry-headers", amqp.DeliveryModeHeader: "1",
		}},
		"reserved-names": {"", "", time.Time{}, `{"ok":true}`, map[string]string{
			"case":                  "reserved-names",
			amqp.ContentTypeHeader:  "application/json", // the property, not the table's "spoofed"
			"amqp-other":            "kept",
			"content-type":          "kept too",
			amqp.DeliveryModeHeader: "1",
		}},
	}
	for name, w := range want {
		m := got[name]
		if m == nil {
			t.Errorf("case %s not received", name)
			continue
		}
		// A message without message_id: its ID is the adapter's to
		// choose (see amqp's package doc), not pinned here.
		if w.id != "" && m.ID != w.id || m.Key != w.key || !m.Time.Equal(w.time) || string(m.Payload) != w.payload {
			t.Errorf("case %s: ID %q Key %q Time %v Payload %q, want %q %q %v %q", name, m.ID, m.Key, m.Time, m.Payload, w.id, w.key, w.time, w.payload)
		}
		if !maps.Equal(m.Headers, w.headers) {
			t.Errorf("case %s: headers\n got %q\nwant %q", name, m.Headers, w.headers)
		}
		if m.Delivery.Topic != topic || m.Delivery.Attempt != 1 || m.Delivery.Redelivered {
			t.Errorf("case %s: delivery %+v", name, m.Delivery)
		}
	}

	// Every one publishes again as it is and arrives the same, but for the
	// user id, which ferry does not publish.
	again := topic + ".again"
	deleteGroup(t, url, again, "ferry")
	pub, err := amqp.NewPublisher(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := pub.Declare(ctx, again, "ferry"); err != nil {
		t.Fatal(err)
	}
	var out []*message.Message
	for _, m := range got {
		out = append(out, &message.Message{ID: m.ID, Key: m.Key, Payload: m.Payload, Headers: m.Headers, Time: m.Time})
	}
	if err := pub.Publish(ctx, again, out...); err != nil {
		t.Fatalf("publishing the delivered messages again: %v", err)
	}
	sub2, err := amqp.NewSubscriber(url, amqp.WithGroup("ferry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub2.Close() })
	c2 := newCollector()
	subscribe(t, sub2, again, c2.handle)
	for name, m2 := range byHeader(t, c2.waitN(t, len(out)), "case") {
		m := got[name]
		wantH := maps.Clone(m.Headers)
		delete(wantH, amqp.UserIDHeader)
		if !maps.Equal(m2.Headers, wantH) || m2.Key != m.Key || string(m2.Payload) != string(m.Payload) || !m.Time.IsZero() && !m2.Time.Equal(m.Time) {
			t.Errorf("case %s published again: %+v\n headers %q\n want   %q", name, m2, m2.Headers, wantH)
		}
		if m.ID != "" && m2.ID != m.ID {
			t.Errorf("case %s published again: ID %q, want %q", name, m2.ID, m.ID)
		}
	}
}

// urlUser is the user name of an AMQP URL.
func urlUser(t *testing.T, raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.User == nil {
		t.Fatalf("no user in the AMQP URL: %v", err)
	}
	return u.User.Username()
}
