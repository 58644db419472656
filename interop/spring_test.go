package interop

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// The Java side: interop/spring-amqp.
const (
	springMain  = "com.github.ferrymsg.ferry.interop.spring.SpringAmqp"
	springOrder = "com.github.ferrymsg.ferry.interop.spring.Order"
)

// springConverters are Spring AMQP's two JSON converters, by the name
// SpringAmqp takes.
var springConverters = []struct{ name, arg string }{
	{"Jackson2JsonMessageConverter", "jackson2"},
	{"JacksonJsonMessageConverter", "jackson3"},
}

// springReceived is a RECEIVED line of SpringAmqp receive.
type springReceived struct {
	Class      string           `json:"class"`
	Value      json.RawMessage  `json:"value"`
	Properties springProperties `json:"properties"`
}

// springProperties is Spring's MessageProperties as SpringAmqp prints it.
type springProperties struct {
	ContentType     string            `json:"contentType"`
	ContentEncoding string            `json:"contentEncoding"`
	MessageID       string            `json:"messageId"`
	CorrelationID   string            `json:"correlationId"`
	ReplyTo         string            `json:"replyTo"`
	Type            string            `json:"type"`
	AppID           string            `json:"appId"`
	Priority        int               `json:"priority"`
	Expiration      string            `json:"expiration"`
	DeliveryMode    string            `json:"deliveryMode"`
	Timestamp       string            `json:"timestamp"`
	Headers         map[string]string `json:"headers"` // "value (JavaClass)"
}

// order is the JSON of the Java record Order.
type order struct {
	ID       string      `json:"id"`
	Customer string      `json:"customer"`
	Quantity int         `json:"quantity"`
	Total    json.Number `json:"total"`
	Express  bool        `json:"express"`
	Items    []string    `json:"items"`
}

// springOrderFields is order as SpringAmqp describes a converted Order:
// read through the record's accessors, total as BigDecimal.toPlainString.
type springOrderFields struct {
	ID       string   `json:"id"`
	Customer string   `json:"customer"`
	Quantity int      `json:"quantity"`
	Total    string   `json:"total"`
	Express  bool     `json:"express"`
	Items    []string `json:"items"`
}

func java(t *testing.T, what string, args ...string) []string {
	t.Helper()
	cp := client(t, "spring")
	return run(t, what, springPrefix(args[0]), "java", append([]string{"-cp", cp, springMain}, args...)...)
}

// springPrefix is the output prefix of a SpringAmqp mode.
func springPrefix(mode string) string {
	if mode == "receive" {
		return "RECEIVED"
	}
	return "SENT"
}

// springQueue declares a plain queue of the Java side's own, bound to
// topic's exchange (which it declares as ferry does), and deletes both
// when t ends.
func springQueue(t *testing.T, url, topic string, pub *amqp.Publisher) string {
	t.Helper()
	if err := pub.Declare(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := topic + ".spring"
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
			ch.ExchangeDelete(topic, false, false)
		}
	})
	if err := ch.QueueBind(q, "#", topic, false, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

// deleteGroup removes a sharded group's queues and exchanges and the
// topic's exchange when t ends.
func deleteGroup(t *testing.T, url, topic, group string) {
	t.Cleanup(func() {
		conn, err := amqp091.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		base := topic + "." + group
		for i := range amqp.DefaultShards {
			if ch, err := conn.Channel(); err == nil {
				ch.QueueDelete(base+"."+strconv.Itoa(i), false, false, false)
				ch.Close()
			}
		}
		for _, x := range []string{base, base + ".unsharded", base + ".members", topic} {
			if ch, err := conn.Channel(); err == nil {
				ch.ExchangeDelete(x, false, false)
				ch.Close()
			}
		}
	})
}

// TestSpringAMQPReadsFerry: ferry publishes, Spring's RabbitTemplate
// receives and converts with each JSON converter.
func TestSpringAMQPReadsFerry(t *testing.T) {
	url := testenv.NeedAMQP(t)
	client(t, "spring")
	for _, conv := range springConverters {
		t.Run(conv.name, func(t *testing.T) {
			topic := name(t)
			pub, err := amqp.NewPublisher(url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pub.Close() })
			q := springQueue(t, url, topic, pub)

			body := []byte(`{"id":"ferry-order-1","customer":"Zoë","quantity":2,"total":9.95,"express":false,"items":["tea","cake"]}`)
			msgs := []*message.Message{
				{ID: "ferry-order-1", Key: "order-1", Payload: body, Headers: map[string]string{
					amqp.ContentTypeHeader:     "application/json",
					amqp.ContentEncodingHeader: "UTF-8",
					"__TypeId__":               springOrder,
					amqp.CorrelationIDHeader:   "corr-7",
					amqp.ReplyToHeader:         "ferry.replies",
					amqp.TypeHeader:            "order.created",
					amqp.AppIDHeader:           "ferry-interop",
					amqp.PriorityHeader:        "4",
					amqp.ExpirationHeader:      "600000",
					"tenant":                   "acme",
				}},
				// With a content type that does not say json, Spring's
				// converter hands over the bytes (and logs a warning).
				{ID: "ferry-text", Payload: body, Headers: map[string]string{amqp.ContentTypeHeader: "text/plain", "__TypeId__": springOrder}},
				// Without one, Spring sees its default,
				// application/octet-stream, and its JSON converters assume
				// JSON (assumeSupportedContentType, on by default).
				{ID: "ferry-no-content-type", Payload: body, Headers: map[string]string{"__TypeId__": springOrder}},
				// A container class the converter trusts by default (a
				// Map needs its key and content types too), sent transient.
				{ID: "ferry-map", Payload: []byte(`{"sku":"B-2","qty":5}`), Headers: map[string]string{
					amqp.ContentTypeHeader:  "application/json",
					"__TypeId__":            "java.util.HashMap",
					"__KeyTypeId__":         "java.lang.String",
					"__ContentTypeId__":     "java.lang.Object",
					amqp.DeliveryModeHeader: "1",
				}},
			}
			if err := pub.Publish(context.Background(), topic, msgs...); err != nil {
				t.Fatal(err)
			}

			got := decode[springReceived](t, java(t, "Spring receive ("+conv.arg+")", "receive", url, q, strconv.Itoa(len(msgs)), conv.arg))
			if len(got) != len(msgs) {
				t.Fatalf("Spring received %d messages, want %d", len(got), len(msgs))
			}

			o, p := got[0], got[0].Properties
			if o.Class != springOrder {
				t.Fatalf("message 1 converted to %s, want %s", o.Class, springOrder)
			}
			var f springOrderFields
			if err := json.Unmarshal(o.Value, &f); err != nil {
				t.Fatal(err)
			}
			want := springOrderFields{ID: "ferry-order-1", Customer: "Zoë", Quantity: 2, Total: "9.95", Express: false, Items: []string{"tea", "cake"}}
			if f.ID != want.ID || f.Customer != want.Customer || f.Quantity != want.Quantity || f.Total != want.Total || f.Express || len(f.Items) != 2 || f.Items[0] != "tea" || f.Items[1] != "cake" {
				t.Errorf("Order fields %+v, want %+v", f, want)
			}
			wantProps := springProperties{ContentType: "application/json", ContentEncoding: "UTF-8", MessageID: "ferry-order-1",
				CorrelationID: "corr-7", ReplyTo: "ferry.replies", Type: "order.created", AppID: "ferry-interop", Priority: 4,
				Expiration: "600000", DeliveryMode: "PERSISTENT"}
			gotProps := p
			gotProps.Headers, gotProps.Timestamp = nil, ""
			if !equalProps(gotProps, wantProps) {
				t.Errorf("message 1 properties\n got %+v\nwant %+v", gotProps, wantProps)
			}
			if p.Timestamp == "" {
				t.Error("message 1 has no timestamp")
			}
			for k, v := range map[string]string{"__TypeId__": springOrder + " (String)", "tenant": "acme (String)", amqp.DefaultKeyHeader: "order-1 (String)"} {
				if p.Headers[k] != v {
					t.Errorf("message 1 header %s = %q, want %q", k, p.Headers[k], v)
				}
			}
			for k := range p.Headers {
				if len(k) > 5 && k[:5] == "amqp-" {
					t.Errorf("message 1 has a table entry %s: property headers must become properties", k)
				}
			}

			if got[1].Class != "[B" || string(got[1].Value) != strconv.Quote("bytes:"+string(body)) || got[1].Properties.ContentType != "text/plain" {
				t.Errorf("message 2 (text/plain): %s %s, content type %q; want the bytes", got[1].Class, got[1].Value, got[1].Properties.ContentType)
			}
			if got[2].Class != springOrder || got[2].Properties.ContentType != "application/octet-stream" {
				t.Errorf("message 3 (no content type): %s, content type %q; want an Order, application/octet-stream", got[2].Class, got[2].Properties.ContentType)
			}

			m := got[3]
			var mv map[string]string
			if err := json.Unmarshal(m.Value, &mv); err != nil {
				t.Fatal(err)
			}
			if m.Class != "java.util.HashMap" || mv["sku"] != "B-2 (String)" || mv["qty"] != "5 (Integer)" || m.Properties.DeliveryMode != "NON_PERSISTENT" {
				t.Errorf("message 4: %s %v, delivery mode %s; want a java.util.HashMap {sku=B-2, qty=5}, NON_PERSISTENT", m.Class, mv, m.Properties.DeliveryMode)
			}
		})
	}
}

func equalProps(a, b springProperties) bool {
	a.Headers, b.Headers = nil, nil
	return a.ContentType == b.ContentType && a.ContentEncoding == b.ContentEncoding && a.MessageID == b.MessageID &&
		a.CorrelationID == b.CorrelationID && a.ReplyTo == b.ReplyTo && a.Type == b.Type && a.AppID == b.AppID &&
		a.Priority == b.Priority && a.Expiration == b.Expiration && a.DeliveryMode == b.DeliveryMode && a.Timestamp == b.Timestamp
}

// TestFerryReadsSpringAMQP: Spring's RabbitTemplate.convertAndSend with
// each JSON converter sends to the topic's exchange; a ferry group
// receives, and its handler forwards the Order as it is to a queue of
// Spring's, which converts it back.
func TestFerryReadsSpringAMQP(t *testing.T) {
	url := testenv.NeedAMQP(t)
	client(t, "spring")
	for _, conv := range springConverters {
		t.Run(conv.name, func(t *testing.T) {
			topic := name(t)
			deleteGroup(t, url, topic, "ferry")
			sub, err := amqp.NewSubscriber(url, amqp.WithGroup("ferry"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sub.Close() }) // after Subscribe's own cleanup
			if err := sub.Declare(context.Background(), topic); err != nil {
				t.Fatal(err)
			}
			c := newCollector()
			subscribe(t, sub, topic, c.handle)

			java(t, "Spring convertAndSend ("+conv.arg+")", "send", url, topic, "order.created", conv.arg)
			got := byHeader(t, c.waitN(t, 3), "__TypeId__")

			o := got[springOrder]
			if o == nil {
				t.Fatalf("no message with __TypeId__ %s: %v", springOrder, slices.Collect(maps.Keys(got)))
			}
			want := map[string]string{
				amqp.ContentTypeHeader:     "application/json",
				amqp.ContentEncodingHeader: "UTF-8",
				"__TypeId__":               springOrder,
				amqp.CorrelationIDHeader:   "corr-42",
				amqp.ReplyToHeader:         "spring.replies",
				amqp.AppIDHeader:           "ferry-interop-spring",
				amqp.TypeHeader:            "order.created",
				amqp.PriorityHeader:        "5",
				amqp.ExpirationHeader:      "600000",
				"x-int":                    "7",
				"x-long":                   "1099511627776",
				"x-bool":                   "true",
				"x-list":                   `["a",1]`,
			}
			if !maps.Equal(o.Headers, want) {
				t.Errorf("Order headers\n got %v\nwant %v", o.Headers, want)
			}
			var body order
			if err := json.Unmarshal(o.Payload, &body); err != nil {
				t.Fatalf("Order payload %q: %v", o.Payload, err)
			}
			if body.ID != "spring-order-1" || body.Customer != "Zoë" || body.Quantity != 3 || body.Total != "12.50" && body.Total != "12.5" || !body.Express || len(body.Items) != 2 {
				t.Errorf("Order payload %s", o.Payload)
			}
			if o.ID != "spring-1" || o.Key != "" || !o.Time.IsZero() || o.Delivery.Topic != topic || o.Delivery.Group != "ferry" {
				t.Errorf("Order: ID %q Key %q Time %v Delivery %+v", o.ID, o.Key, o.Time, o.Delivery)
			}

			mp := got["java.util.LinkedHashMap"]
			wantMap := map[string]string{
				amqp.ContentTypeHeader: "application/json", amqp.ContentEncodingHeader: "UTF-8", amqp.DeliveryModeHeader: "1",
				"__TypeId__": "java.util.LinkedHashMap", "__KeyTypeId__": "java.lang.Object", "__ContentTypeId__": "java.lang.Object",
			}
			if mp == nil || !maps.Equal(mp.Headers, wantMap) || string(mp.Payload) != `{"sku":"A-1","qty":2}` {
				t.Errorf("Map message %+v, want headers %v", mp, wantMap)
			}
			s := got["java.lang.String"]
			if s == nil || string(s.Payload) != `"hello from Spring"` || s.Headers[amqp.ContentTypeHeader] != "application/json" {
				t.Errorf("String message %+v", s)
			}

			// Forwarded unchanged (a bridge, a dead-letter copy), the Order
			// is still Spring's Order with Spring's properties.
			pub, err := amqp.NewPublisher(url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pub.Close() })
			back := topic + ".back"
			q := springQueue(t, url, back, pub)
			if err := pub.Publish(context.Background(), back, o); err != nil {
				t.Fatal(err)
			}
			r := decode[springReceived](t, java(t, "Spring receive of the forwarded Order ("+conv.arg+")", "receive", url, q, "1", conv.arg))
			var f springOrderFields
			if len(r) != 1 || r[0].Class != springOrder || json.Unmarshal(r[0].Value, &f) != nil || f.ID != "spring-order-1" || f.Customer != "Zoë" {
				t.Fatalf("forwarded Order: %+v", r)
			}
			rp := r[0].Properties
			if rp.MessageID != "spring-1" || rp.CorrelationID != "corr-42" || rp.Priority != 5 || rp.Expiration != "600000" ||
				rp.Type != "order.created" || rp.AppID != "ferry-interop-spring" || rp.ReplyTo != "spring.replies" ||
				rp.Headers["x-int"] != "7 (String)" || rp.Headers["x-bool"] != "true (String)" {
				t.Errorf("forwarded Order's properties %+v", rp)
			}
		})
	}
}
