package amqp

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

func TestHeaderString(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"string", "s", "s"},
		{"bytes", []byte("b"), "b"},
		{"void", nil, ""},
		{"bool", false, "false"},
		{"int8", int8(-8), "-8"},
		{"int16", int16(16), "16"},
		{"int32", int32(32), "32"},
		{"int64", int64(1) << 40, "1099511627776"},
		{"uint8", uint8(200), "200"},
		{"float32", float32(0.5), "0.5"},
		{"float64", 2.25, "2.25"},
		{"timestamp in UTC", ts, "2024-05-06T06:08:09Z"},
		{"decimal", amqp091.Decimal{Scale: 2, Value: 12345}, "123.45"},
		{"array", []any{int32(1), "a", true}, `[1,"a",true]`},
		{"x-death", []any{amqp091.Table{"count": int64(2), "time": ts, "routing-keys": []any{"k"}}},
			`[{"count":2,"routing-keys":["k"],"time":"2024-05-06T06:08:09Z"}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := HeaderString(c.in); got != c.want {
				t.Errorf("HeaderString(%#v) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestPublishingAndBack(t *testing.T) {
	cfg, err := newSubscriberConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1700000000456)
	m := &message.Message{ID: "i", Key: "k", Payload: []byte("p"), Headers: map[string]string{"h": "v", "ferry-key": "spoof"}, Time: at}
	pub := cfg.publishing(m)
	if pub.MessageId != "i" || pub.DeliveryMode != amqp091.Persistent || !pub.Timestamp.Equal(at) || pub.Headers["ferry-key"] != "k" || pub.Headers[TimeHeader] != at.UnixMilli() {
		t.Fatalf("publishing %+v", pub)
	}
	if m.Headers["ferry-key"] != "spoof" {
		t.Error("publishing modified the caller's headers")
	}
	d := deliveryOf(pub)
	d.Timestamp, d.DeliveryTag = pub.Timestamp.Truncate(time.Second), 7
	got := cfg.toMessage("t", "g", d)
	if got.ID != "i" || got.Key != "k" || string(got.Payload) != "p" || !got.Time.Equal(at) || len(got.Headers) != 1 || got.Headers["h"] != "v" {
		t.Fatalf("round trip %+v", got)
	}
	if got.Delivery != (message.Delivery{System: System, Topic: "t", Group: "g", Attempt: 1, Partition: -1, Offset: -1, DeliveryTag: 7}) {
		t.Errorf("delivery %+v", got.Delivery)
	}
}

func TestAttemptFromBroker(t *testing.T) {
	cfg, _ := newSubscriberConfig(nil)
	cases := []struct {
		name string
		d    amqp091.Delivery
		want int
	}{
		{"first", amqp091.Delivery{}, 1},
		{"redelivered flag", amqp091.Delivery{Redelivered: true}, 2},
		{"quorum delivery count", amqp091.Delivery{Redelivered: true, Headers: amqp091.Table{"x-delivery-count": int64(4)}}, 5},
		{"delivery count as long", amqp091.Delivery{Headers: amqp091.Table{"x-delivery-count": int32(1)}}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := cfg.toMessage("t", "g", &c.d).Delivery.Attempt; got != c.want {
				t.Errorf("Attempt = %d, want %d", got, c.want)
			}
		})
	}
}

func TestValidateTopic(t *testing.T) {
	for _, ok := range []string{"orders", "a.b-c_d:e", strings.Repeat("x", 255), "AMQ.upper-is-fine"} {
		if err := ValidateTopic(ok); err != nil {
			t.Errorf("ValidateTopic(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "amq.topic", strings.Repeat("x", 256), "sp ace", "slash/", "é", "star*"} {
		if err := ValidateTopic(bad); !errors.Is(err, message.ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", bad, err)
		}
	}
}

func TestTopologyDefaults(t *testing.T) {
	cfg, _ := newSubscriberConfig(nil)
	if cfg.bindKey() != "#" || cfg.queueDeclareArgs() != nil || cfg.prefetchCount() != DefaultMinPrefetch {
		t.Errorf("defaults: bind %q args %v prefetch %d", cfg.bindKey(), cfg.queueDeclareArgs(), cfg.prefetchCount())
	}
	if q, err := cfg.queueFor("orders", "billing"); q != "orders.billing" || err != nil {
		t.Errorf("queueFor = %q, %v", q, err)
	}
	cfg, _ = newSubscriberConfig([]SubscriberOption{WithExchangeKind(ExchangeFanout), WithQuorumQueues(), WithDeadLetterExchange("dlx", "dead"),
		WithQueueArgs(amqp091.Table{"x-max-length": int64(10)}), WithConcurrency(20),
		WithQueueName(func(topic, group string) string { return group + "@" + topic })})
	args := cfg.queueDeclareArgs()
	if cfg.bindKey() != "" || args["x-queue-type"] != "quorum" || args["x-dead-letter-exchange"] != "dlx" ||
		args["x-dead-letter-routing-key"] != "dead" || args["x-max-length"] != int64(10) || cfg.prefetchCount() != 320 {
		t.Errorf("options: bind %q args %v prefetch %d", cfg.bindKey(), args, cfg.prefetchCount())
	}
	if q, _ := cfg.queueFor("t", "g"); q != "g@t" {
		t.Errorf("queue name %q", q)
	}
	if _, err := cfg.queueFor(strings.Repeat("x", 255), "g"); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("long queue name: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	red, pw := redactURL("amqp://user:s3cret@host:5672/vh")
	if strings.Contains(red, "s3cret") || pw != "s3cret" {
		t.Errorf("redactURL = %q, %q", red, pw)
	}
	c := &conn{password: "s3cret"}
	inner := errors.New("auth s3cret refused")
	err := c.scrub(inner)
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, inner) {
		t.Errorf("scrub = %v", err)
	}
}

// deliveryOf is the delivery the broker makes of p: every property and
// the header table as they were published.
func deliveryOf(p amqp091.Publishing) *amqp091.Delivery {
	return &amqp091.Delivery{
		Headers:         p.Headers,
		ContentType:     p.ContentType,
		ContentEncoding: p.ContentEncoding,
		DeliveryMode:    p.DeliveryMode,
		Priority:        p.Priority,
		CorrelationId:   p.CorrelationId,
		ReplyTo:         p.ReplyTo,
		Expiration:      p.Expiration,
		MessageId:       p.MessageId,
		Timestamp:       p.Timestamp,
		Type:            p.Type,
		UserId:          p.UserId,
		AppId:           p.AppId,
		Body:            p.Body,
	}
}

// allProps has every property header with a value that sets its property.
var allProps = map[string]string{
	ContentTypeHeader:     "application/json",
	ContentEncodingHeader: "UTF-8",
	CorrelationIDHeader:   "corr-1",
	ReplyToHeader:         "replies",
	TypeHeader:            "order.created",
	AppIDHeader:           "billing",
	PriorityHeader:        "7",
	ExpirationHeader:      "60000",
	DeliveryModeHeader:    "1",
}

func TestPropertyHeadersPublish(t *testing.T) {
	cfg, _ := newPublisherConfig(nil)
	h := map[string]string{"__TypeId__": "com.example.Order", "content-type": "text/plain", "amqp-other": "x", UserIDHeader: "alice"}
	for k, v := range allProps {
		h[k] = v
	}
	m := &message.Message{ID: "i", Payload: []byte("{}"), Headers: h, Time: time.UnixMilli(1)}
	if err := cfg.checkMessage(0, 1, m); err != nil {
		t.Fatal(err)
	}
	pub := cfg.publishing(m)
	want := amqp091.Publishing{ContentType: "application/json", ContentEncoding: "UTF-8", CorrelationId: "corr-1", ReplyTo: "replies",
		Type: "order.created", AppId: "billing", Priority: 7, Expiration: "60000", DeliveryMode: amqp091.Transient, MessageId: "i"}
	if !equalPublishing(pub, want) {
		t.Errorf("properties\n got %+v\nwant %+v", pub, want)
	}
	if pub.UserId != "" {
		t.Errorf("user-id published: %q", pub.UserId)
	}
	// The properties are not also table entries; other headers are, the
	// unprefixed "content-type" and an unknown amqp- name included.
	for k := range allProps {
		if _, ok := pub.Headers[k]; ok {
			t.Errorf("property header %s also in the header table", k)
		}
	}
	if _, ok := pub.Headers[UserIDHeader]; ok {
		t.Errorf("%s in the header table", UserIDHeader)
	}
	for k, v := range map[string]string{"__TypeId__": "com.example.Order", "content-type": "text/plain", "amqp-other": "x"} {
		if pub.Headers[k] != v {
			t.Errorf("table %q = %v, want %q", k, pub.Headers[k], v)
		}
	}
	if h[UserIDHeader] != "alice" || len(h) != len(allProps)+4 {
		t.Error("publishing modified the caller's headers")
	}
}

// equalPublishing compares the properties of a and b.
func equalPublishing(a, b amqp091.Publishing) bool {
	return a.ContentType == b.ContentType && a.ContentEncoding == b.ContentEncoding && a.DeliveryMode == b.DeliveryMode &&
		a.Priority == b.Priority && a.CorrelationId == b.CorrelationId && a.ReplyTo == b.ReplyTo && a.Expiration == b.Expiration &&
		a.MessageId == b.MessageId && a.Type == b.Type && a.UserId == b.UserId && a.AppId == b.AppId
}

func TestPropertyHeadersDefaultsAndEmpty(t *testing.T) {
	cfg, _ := newPublisherConfig(nil)
	for _, h := range []map[string]string{
		nil,
		{DeliveryModeHeader: "2"},
		{DeliveryModeHeader: "", ContentTypeHeader: "", PriorityHeader: "", ExpirationHeader: "", TypeHeader: ""},
	} {
		m := &message.Message{ID: "i", Headers: h}
		if err := cfg.checkMessage(0, 1, m); err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		pub := cfg.publishing(m)
		if pub.DeliveryMode != amqp091.Persistent || pub.ContentType != "" || pub.Priority != 0 || pub.Expiration != "" || pub.Type != "" {
			t.Errorf("%v: published %+v", h, pub)
		}
		for k := range h {
			if _, ok := pub.Headers[k]; ok {
				t.Errorf("%v: %s in the header table", h, k)
			}
		}
	}
}

func TestPropertyHeadersDelivered(t *testing.T) {
	cfg, _ := newSubscriberConfig(nil)
	// What Spring AMQP's RabbitTemplate.convertAndSend with a JSON
	// converter sends, plus the properties a MessagePostProcessor sets.
	d := &amqp091.Delivery{
		ContentType: "application/json", ContentEncoding: "UTF-8", DeliveryMode: amqp091.Persistent, Priority: 5,
		CorrelationId: "corr-42", ReplyTo: "spring.replies", Expiration: "600000", Type: "order.created", AppId: "spring", UserId: "guest",
		Headers: amqp091.Table{"__TypeId__": "com.example.Order", "x-int": int32(7),
			// ferry never writes these: dropped, the property wins or is unset
			TypeHeader: "from the table", PriorityHeader: "9", UserIDHeader: "mallory"},
		Body: []byte(`{"id":"o-1"}`),
	}
	got := cfg.toMessage("t", "g", d)
	want := map[string]string{
		"__TypeId__": "com.example.Order", "x-int": "7",
		ContentTypeHeader: "application/json", ContentEncodingHeader: "UTF-8", PriorityHeader: "5", CorrelationIDHeader: "corr-42",
		ReplyToHeader: "spring.replies", ExpirationHeader: "600000", TypeHeader: "order.created", AppIDHeader: "spring", UserIDHeader: "guest",
	}
	if !maps.Equal(got.Headers, want) {
		t.Errorf("headers\n got %v\nwant %v", got.Headers, want)
	}
	if got.ID != DerivedID("t", d) || got.Key != "" || string(got.Payload) != `{"id":"o-1"}` { // no message_id: a derived ID
		t.Errorf("got %+v", got)
	}

	// Unset properties give no header, and a table entry with a property
	// name is dropped even then; a message that is not persistent says so.
	for _, mode := range []uint8{0, amqp091.Transient} {
		d := &amqp091.Delivery{DeliveryMode: mode, Headers: amqp091.Table{AppIDHeader: "table", "amqp-other": "kept"}}
		got := cfg.toMessage("t", "g", d)
		if want := map[string]string{DeliveryModeHeader: "1", "amqp-other": "kept"}; !maps.Equal(got.Headers, want) {
			t.Errorf("delivery mode %d: headers %v, want %v", mode, got.Headers, want)
		}
	}
	if got := cfg.toMessage("t", "g", &amqp091.Delivery{DeliveryMode: amqp091.Persistent}); got.Headers != nil {
		t.Errorf("persistent, no properties: headers %v, want none", got.Headers)
	}
}

func TestPropertyHeadersRoundTrip(t *testing.T) {
	cfg, _ := newSubscriberConfig(nil)
	for _, mode := range []string{"1", "2", ""} {
		h := map[string]string{"plain": "v"}
		for k, v := range allProps {
			h[k] = v
		}
		h[DeliveryModeHeader] = mode
		m := &message.Message{ID: "i", Key: "k", Headers: h, Time: time.UnixMilli(1700000000123)}
		if err := cfg.checkMessage(0, 1, m); err != nil {
			t.Fatal(err)
		}
		back := cfg.toMessage("t", "g", deliveryOf(cfg.publishing(m)))
		want := maps.Clone(h)
		if mode != "1" {
			delete(want, DeliveryModeHeader) // persistent: ferry's default, not delivered
		}
		if !maps.Equal(back.Headers, want) || back.Key != "k" || back.ID != "i" {
			t.Errorf("delivery mode %q: round trip\n got %v\nwant %v", mode, back.Headers, want)
		}
		// And once more: a delivered message publishes as it is.
		if err := cfg.checkMessage(0, 1, back); err != nil {
			t.Errorf("delivered message cannot be published again: %v", err)
		}
		again := cfg.toMessage("t", "g", deliveryOf(cfg.publishing(back)))
		if !maps.Equal(again.Headers, back.Headers) {
			t.Errorf("second round trip\n got %v\nwant %v", again.Headers, back.Headers)
		}
	}
}

func TestPropertyHeadersInvalid(t *testing.T) {
	cfg, _ := newPublisherConfig(nil)
	long := strings.Repeat("x", 256)
	bad := []map[string]string{
		{PriorityHeader: "256"}, {PriorityHeader: "-1"}, {PriorityHeader: "high"}, {PriorityHeader: " 1"},
		{ExpirationHeader: "-1"}, {ExpirationHeader: "1.5"}, {ExpirationHeader: "60s"}, {ExpirationHeader: "+5"}, {ExpirationHeader: "18446744073709551616"},
		{DeliveryModeHeader: "0"}, {DeliveryModeHeader: "3"}, {DeliveryModeHeader: "persistent"},
		{ContentTypeHeader: long}, {ContentEncodingHeader: long}, {CorrelationIDHeader: long}, {ReplyToHeader: long}, {TypeHeader: long}, {AppIDHeader: long},
	}
	for _, h := range bad {
		err := cfg.checkMessage(0, 1, &message.Message{ID: "i", Headers: h})
		if !errors.Is(err, message.ErrInvalidMessage) {
			t.Errorf("%.40v: %v, want ErrInvalidMessage", h, err)
		}
	}
	good := []map[string]string{
		{PriorityHeader: "0"}, {PriorityHeader: "255"}, {ExpirationHeader: "0"}, {ExpirationHeader: "4294967295"}, {ExpirationHeader: "00012"},
		{ContentTypeHeader: long[:255]}, {UserIDHeader: long}, {"amqp-unknown": long},
	}
	for _, h := range good {
		if err := cfg.checkMessage(0, 1, &message.Message{ID: "i", Headers: h}); err != nil {
			t.Errorf("%.40v: %v", h, err)
		}
	}
}
