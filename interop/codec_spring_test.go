package interop

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// TestSpringAMQPReadsFerryCodec: a typed codec.Publisher (JSON, with
// WithTypeID) publishes; Spring's RabbitTemplate converts each message
// with each JSON converter into the Java Order, from the content_type
// property and __TypeId__ header the codec set.
func TestSpringAMQPReadsFerryCodec(t *testing.T) {
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
			orders, err := codec.NewPublisher(pub, codec.JSON[order](), codec.WithTypeID(springOrder))
			if err != nil {
				t.Fatal(err)
			}
			want := []order{
				{ID: "typed-1", Customer: "Zoë", Quantity: 2, Total: "9.95", Express: true, Items: []string{"tea", "cake"}},
				{ID: "typed-2", Customer: "名前", Quantity: 0, Total: "0", Items: []string{}},
			}
			for _, o := range want {
				if err := orders.Publish(context.Background(), topic, o.Customer, o); err != nil {
					t.Fatal(err)
				}
			}
			got := decode[springReceived](t, java(t, "Spring receive ("+conv.arg+")", "receive", url, q, strconv.Itoa(len(want)), conv.arg))
			if len(got) != len(want) {
				t.Fatalf("Spring received %d messages, want %d", len(got), len(want))
			}
			for i, r := range got {
				if r.Class != springOrder {
					t.Errorf("message %d converted to %s, want %s", i+1, r.Class, springOrder)
					continue
				}
				var f springOrderFields
				if err := json.Unmarshal(r.Value, &f); err != nil {
					t.Fatal(err)
				}
				w := want[i]
				if f.ID != w.ID || f.Customer != w.Customer || f.Quantity != w.Quantity || f.Total != string(w.Total) || f.Express != w.Express || len(f.Items) != len(w.Items) {
					t.Errorf("Spring's Order %+v, ferry published %+v", f, w)
				}
				if r.Properties.ContentType != "application/json" || r.Properties.Headers["__TypeId__"] != springOrder+" (String)" {
					t.Errorf("message %d: content type %q, headers %v; want application/json in content_type and __TypeId__", i+1, r.Properties.ContentType, r.Properties.Headers)
				}
			}
		})
	}
}

// TestFerryCodecReadsSpringAMQP: RabbitTemplate.convertAndSend with each
// JSON converter sends an Order, a Map and a String; a typed
// codec.Handler of the Go order decodes the Order (and the Map, a JSON
// object too), and refuses the String, a JSON string, with a permanent
// *codec.DecodeError.
func TestFerryCodecReadsSpringAMQP(t *testing.T) {
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
			t.Cleanup(func() { sub.Close() })
			if err := sub.Declare(context.Background(), topic); err != nil {
				t.Fatal(err)
			}
			type result struct {
				o   order
				err error
			}
			var mu sync.Mutex
			results := map[string]result{} // by __TypeId__
			done := make(chan struct{}, 3)
			h := codec.Handler(codec.JSON[order](), func(_ context.Context, o order, m *message.Message) error {
				mu.Lock()
				results[m.Headers[codec.HeaderTypeID]] = result{o: o}
				mu.Unlock()
				return nil
			})
			// Record decode errors and settle, in place of a DLT.
			record := func(ctx context.Context, m *message.Message) error {
				err := h(ctx, m)
				if err != nil {
					mu.Lock()
					results[m.Headers[codec.HeaderTypeID]] = result{err: err}
					mu.Unlock()
				}
				done <- struct{}{}
				return nil
			}
			subscribe(t, sub, topic, record)
			java(t, "Spring convertAndSend ("+conv.arg+")", "send", url, topic, "order.created", conv.arg)
			for range 3 {
				select {
				case <-done:
				case <-time.After(wait):
					t.Fatalf("ferry handled fewer than 3 of Spring's messages: %v", results)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			o := results[springOrder]
			if o.err != nil || o.o.ID != "spring-order-1" || o.o.Customer != "Zoë" || o.o.Quantity != 3 || (o.o.Total != "12.50" && o.o.Total != "12.5") || !o.o.Express || len(o.o.Items) != 2 {
				t.Errorf("Spring's Order decoded as %+v, %v", o.o, o.err)
			}
			if m := results["java.util.LinkedHashMap"]; m.err != nil {
				t.Errorf("Spring's Map (a JSON object): %v", m.err)
			}
			s := results["java.lang.String"]
			var de *codec.DecodeError
			if !errors.As(s.err, &de) || de.ContentType != "application/json" {
				t.Errorf("Spring's String (a JSON string) into an order: %v, want a *codec.DecodeError", s.err)
			}
		})
	}
}

// The Java side of the Kafka tests: interop/spring-amqp's SpringKafkaJson.
const springKafkaMain = "com.github.ferrymsg.ferry.interop.spring.SpringKafkaJson"

// springSerdes are Spring Kafka's two generations of JSON serializers, by
// the name SpringKafkaJson takes.
var springSerdes = []struct{ name, arg string }{
	{"JsonSerializer", "jackson2"},
	{"JacksonJsonSerializer", "jackson3"},
}

// springKafkaReceived is a RECEIVED line of SpringKafkaJson receive.
type springKafkaReceived struct {
	Key     string            `json:"key"`
	Class   string            `json:"class"`
	Value   json.RawMessage   `json:"value"`
	Headers map[string]string `json:"headers"`
	Error   string            `json:"error"`
}

func springKafka(t *testing.T, what string, args ...string) []string {
	t.Helper()
	cp := client(t, "spring")
	return run(t, what, springPrefix(args[0]), "java", append([]string{"-cp", cp, springKafkaMain}, args...)...)
}

// TestSpringKafkaReadsFerryCodec: a typed codec.Publisher on Kafka
// publishes Orders; a Spring consumer whose value deserializer is
// ErrorHandlingDeserializer delegating to JsonDeserializer (or Jackson 3's
// JacksonJsonDeserializer), trusting Order's package, builds the Java
// Order from __TypeId__ (WithTypeID). Without a type id and with no
// default type configured, Spring reports a deserialization error, which
// is why WithTypeID exists.
func TestSpringKafkaReadsFerryCodec(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	client(t, "spring")
	for _, serde := range springSerdes {
		t.Run(serde.name, func(t *testing.T) {
			// Created by the publisher: one that kadm just created may
			// not be in the broker's metadata yet.
			topic := name(t)
			pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pub.Close() })
			t.Cleanup(func() { deleteKafkaTopic(brokers, topic) })
			typed, err := codec.NewPublisher(pub, codec.JSON[order](), codec.WithTypeID(springOrder))
			if err != nil {
				t.Fatal(err)
			}
			untyped, err := codec.NewPublisher(pub, codec.JSON[order]())
			if err != nil {
				t.Fatal(err)
			}
			o := order{ID: "typed-1", Customer: "Zoë", Quantity: 2, Total: "9.95", Express: true, Items: []string{"tea", "cake"}}
			if err := typed.Publish(context.Background(), topic, o.ID, o); err != nil {
				t.Fatal(err)
			}
			if err := untyped.Publish(context.Background(), topic, "untyped-1", order{ID: "untyped-1"}); err != nil {
				t.Fatal(err)
			}
			got := decode[springKafkaReceived](t, springKafka(t, "Spring Kafka receive ("+serde.arg+")",
				"receive", strings.Join(brokers, ","), topic, "spring-"+topic, "2", serde.arg))
			if len(got) != 2 {
				t.Fatalf("Spring received %d records, want 2", len(got))
			}
			r := got[0]
			var f springOrderFields
			if r.Class != springOrder || r.Error != "" || json.Unmarshal(r.Value, &f) != nil {
				t.Fatalf("record 1: class %q error %q value %s; want a %s", r.Class, r.Error, r.Value, springOrder)
			}
			if f.ID != o.ID || f.Customer != o.Customer || f.Quantity != o.Quantity || f.Total != "9.95" || !f.Express || len(f.Items) != 2 || r.Key != o.ID {
				t.Errorf("Spring's Order %+v (key %q), ferry published %+v", f, r.Key, o)
			}
			// The deserializer removes the __TypeId__ it used
			// (spring.json.remove.type.headers, true by default); that it
			// used it shows in the class, as no default type is set.
			if r.Headers[codec.HeaderContentType] != "application/json" {
				t.Errorf("record 1 headers %v; want contentType application/json", r.Headers)
			}
			if u := got[1]; u.Class != "" || !strings.Contains(u.Error, "No type information in headers and no default type provided") {
				t.Errorf("record 2 (no __TypeId__): class %q error %q; want Spring's missing-type error", u.Class, u.Error)
			}
		})
	}
}

// TestFerryCodecReadsSpringKafka: KafkaTemplate with JsonSerializer (or
// JacksonJsonSerializer) sends two Orders; a typed codec.Handler of the Go
// order on a kafka subscriber decodes them, with Spring's __TypeId__
// header and the record key.
func TestFerryCodecReadsSpringKafka(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	client(t, "spring")
	for _, serde := range springSerdes {
		t.Run(serde.name, func(t *testing.T) {
			topic := kafkaTopic(t, brokers)
			sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup("ferry-"+topic))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sub.Close() })
			type got struct {
				o   order
				key string
				tid string
			}
			ch := make(chan got, 2)
			subscribe(t, sub, topic, codec.Handler(codec.JSON[order](), func(_ context.Context, o order, m *message.Message) error {
				ch <- got{o, m.Key, m.Headers[codec.HeaderTypeID]}
				return nil
			}))
			springKafka(t, "Spring Kafka send ("+serde.arg+")", "send", strings.Join(brokers, ","), topic, serde.arg)
			byID := map[string]got{}
			for len(byID) < 2 {
				select {
				case g := <-ch:
					byID[g.o.ID] = g
				case <-time.After(wait):
					t.Fatalf("ferry decoded %d of Spring's 2 Orders: %v", len(byID), byID)
				}
			}
			g1, g2 := byID["spring-order-1"], byID["spring-order-2"]
			if g1.o.Customer != "Zoë" || g1.o.Quantity != 3 || (g1.o.Total != "12.50" && g1.o.Total != "12.5") || !g1.o.Express || len(g1.o.Items) != 2 || g1.key != "spring-order-1" || g1.tid != springOrder {
				t.Errorf("spring-order-1 decoded as %+v", g1)
			}
			if g2.o.Customer != "名前" || g2.o.Total != "0.99" || g2.o.Express || g2.key != "spring-order-2" {
				t.Errorf("spring-order-2 decoded as %+v", g2)
			}
		})
	}
}

func deleteKafkaTopic(brokers []string, topic string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), topic)
}
