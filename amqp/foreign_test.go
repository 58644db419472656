package amqp_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestForeignMessagesGetAStableID: a message from another producer without
// message_id gets an ID derived from its content, the same on every
// redelivery of the stored message, so the dedupe middleware still works;
// two messages with different content get different IDs.
func TestForeignMessagesGetAStableID(t *testing.T) {
	url := testenv.NeedAMQP(t)
	t.Run("classic", func(t *testing.T) { testForeignID(t, url) })
	// Quorum queues add x-delivery-count to redeliveries.
	t.Run("quorum", func(t *testing.T) { testForeignID(t, url, amqp.WithQuorumQueues()) })
}

func testForeignID(t *testing.T, url string, opts ...amqp.SubscriberOption) {
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	s := newSub(t, url, append([]amqp.SubscriberOption{amqp.WithGroup("g"), amqp.WithShards(1)}, opts...)...)
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	publishRaw(t, url, topic,
		amqp091.Publishing{Body: []byte("a"), Timestamp: ts, Headers: amqp091.Table{"h": "1"}},
		amqp091.Publishing{Body: []byte("b"), Timestamp: ts, Headers: amqp091.Table{"h": "1"}},
	)
	// First run: fail every delivery, so the broker keeps them; the
	// second run (a new connection: redelivered) sees them again.
	var mu sync.Mutex
	ids := map[string][]string{} // body -> IDs seen
	var seen atomic.Int32
	gotBoth := make(chan struct{})
	h := func(_ context.Context, m *message.Message) error {
		mu.Lock()
		ids[string(m.Payload)] = append(ids[string(m.Payload)], m.ID)
		mu.Unlock()
		if seen.Add(1) == 2 {
			close(gotBoth)
		}
		return errors.New("not now")
	}
	stop := run(t, s, topic, h)
	select {
	case <-gotBoth:
	case <-time.After(wait):
		t.Fatal("the messages were not delivered")
	}
	stop()

	c := newCollector()
	run(t, s, topic, c.handle)
	got := c.waitN(t, 2)
	mu.Lock()
	defer mu.Unlock()
	for _, m := range got {
		first := ids[string(m.Payload)]
		if m.ID == "" {
			t.Errorf("message %q has an empty ID", m.Payload)
			continue
		}
		if len(first) == 0 || first[0] != m.ID {
			t.Errorf("message %q: ID %q on redelivery, %v before", m.Payload, m.ID, first)
		}
		if m.Delivery.Attempt < 2 {
			t.Errorf("message %q: attempt %d, want a redelivery", m.Payload, m.Delivery.Attempt)
		}
		if !strings.HasPrefix(m.ID, amqp.ForeignIDPrefix) {
			t.Errorf("message %q: ID %q lacks the prefix %q", m.Payload, m.ID, amqp.ForeignIDPrefix)
		}
	}
	if len(got) == 2 && got[0].ID == got[1].ID {
		t.Errorf("two different messages got the same ID %q", got[0].ID)
	}
}

// TestDerivedID: the ID of a message without message_id is the same for
// every redelivery of it (whatever the broker changes: the redelivered
// flag, the delivery tag, x-delivery-count, x-death, the routing key of a
// dead-letter cycle) and differs when the message does.
func TestDerivedID(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	base := func() *amqp091.Delivery {
		return &amqp091.Delivery{Body: []byte("body"), Timestamp: ts, ContentType: "application/json", Exchange: "orders", RoutingKey: "k",
			Headers: amqp091.Table{"h": "1", "n": int32(7), "tbl": amqp091.Table{"a": "b", "c": []any{int64(1), "x"}}}}
	}
	id := amqp.DerivedID("orders", base())
	if !strings.HasPrefix(id, amqp.ForeignIDPrefix) || len(id) != len(amqp.ForeignIDPrefix)+32 {
		t.Fatalf("DerivedID = %q", id)
	}
	same := map[string]func(*amqp091.Delivery){
		"redelivered":      func(d *amqp091.Delivery) { d.Redelivered = true; d.DeliveryTag = 99 },
		"x-delivery-count": func(d *amqp091.Delivery) { d.Headers["x-delivery-count"] = int64(3) },
		"x-death": func(d *amqp091.Delivery) {
			d.Headers["x-death"] = []any{amqp091.Table{"count": int64(1)}}
			d.Headers["x-first-death-queue"] = "q"
		},
		"dead-letter key": func(d *amqp091.Delivery) { d.Exchange, d.RoutingKey = "dlx", "other" },
		"consumer":        func(d *amqp091.Delivery) { d.ConsumerTag = "c2" },
	}
	for name, f := range same {
		d := base()
		f(d)
		if got := amqp.DerivedID("orders", d); got != id {
			t.Errorf("%s changed the ID: %s -> %s", name, id, got)
		}
	}
	differ := map[string]func(*amqp091.Delivery){
		"body":        func(d *amqp091.Delivery) { d.Body = []byte("other") },
		"header":      func(d *amqp091.Delivery) { d.Headers["h"] = "2" },
		"header type": func(d *amqp091.Delivery) { d.Headers["n"] = "7" },
		"new header":  func(d *amqp091.Delivery) { d.Headers["x-custom"] = "v" },
		"nested":      func(d *amqp091.Delivery) { d.Headers["tbl"] = amqp091.Table{"a": "c"} },
		"timestamp":   func(d *amqp091.Delivery) { d.Timestamp = ts.Add(time.Second) },
		"no time":     func(d *amqp091.Delivery) { d.Timestamp = time.Time{} },
		"property":    func(d *amqp091.Delivery) { d.CorrelationId = "r1" },
		"split":       func(d *amqp091.Delivery) { d.Body = []byte("bo"); d.ContentType = "dyapplication/json" },
	}
	seen := map[string]string{id: "base"}
	for name, f := range differ {
		d := base()
		f(d)
		got := amqp.DerivedID("orders", d)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s gives the ID of %s: %s", name, prev, got)
		}
		seen[got] = name
	}
	if amqp.DerivedID("payments", base()) == id {
		t.Error("the same message on another topic has the same ID")
	}
	// Documented: identical messages share an ID.
	if amqp.DerivedID("orders", base()) != id {
		t.Error("DerivedID is not deterministic")
	}
}
