package interop

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/internal/testenv"
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
