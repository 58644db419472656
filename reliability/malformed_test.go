package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// order is what the well-formed messages carry.
type order struct {
	N int `json:"n"`
}

// malformedCase runs a consumer whose handler decodes JSON, behind the
// retry middleware with a dead-letter topic, over a stream where messages
// from a foreign producer (odd headers, bodies that are not JSON) sit
// between well-formed ones with the same key. Every well-formed message
// must be handled, in order, and every malformed one dead-lettered with
// the decoding error; the subscriber keeps running.
type malformedCase struct {
	pub      message.Publisher
	newSub   func(group string) message.Subscriber
	topic    string
	good     int                // well-formed messages the producer sends
	bad      int                // malformed ones
	produce  func(t *testing.T) // sends them, interleaved, in one order
	adapter  string
	injected string
}

func (c *malformedCase) run(t *testing.T) {
	mw, err := retry.New(retry.WithMaxAttempts(2), retry.WithConstantBackoff(10*time.Millisecond), retry.WithDeadLetter(c.pub))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var goods []int
	deliveries := 0
	h := message.Chain(func(_ context.Context, m *message.Message) error {
		mu.Lock()
		deliveries++
		mu.Unlock()
		var o order
		if err := json.Unmarshal(m.Payload, &o); err != nil {
			return retry.Permanent(fmt.Errorf("malformed order: %w", err))
		}
		mu.Lock()
		goods = append(goods, o.N)
		mu.Unlock()
		return nil
	}, mw)
	dl := newLedger()
	var dlMu sync.Mutex
	var infos []retry.DeadLetterInfo
	sb := subscribe(context.Background(), c.newSub("g"), c.topic, h)
	dsb := subscribe(context.Background(), c.newSub("dlt"), c.topic+".DLT", func(ctx context.Context, m *message.Message) error {
		info, err := retry.ParseDeadLetter(m)
		if err != nil {
			t.Errorf("dead letter %q: %v", m.ID, err)
		}
		dlMu.Lock()
		infos = append(infos, info)
		dlMu.Unlock()
		return dl.handle(ctx, m)
	})
	c.produce(t)
	dl.waitUntil(90*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(goods) >= c.good && dl.result().Received >= c.bad
	})
	sb.running(t)
	dsb.running(t)
	sb.stop(t)
	dsb.stop(t)

	mu.Lock()
	defer mu.Unlock()
	if len(goods) != c.good {
		t.Errorf("handled %d well-formed messages, want %d", len(goods), c.good)
	}
	for i, n := range goods {
		if n != i {
			t.Errorf("well-formed messages handled in order %v, want 0..%d", goods, c.good-1)
			break
		}
	}
	dlMu.Lock()
	defer dlMu.Unlock()
	if len(infos) < c.bad {
		t.Errorf("%d messages dead-lettered, want %d", len(infos), c.bad)
	}
	for _, info := range infos {
		if !strings.Contains(info.Error, "malformed order") || info.Topic != c.topic {
			t.Errorf("dead letter info %+v: want the decoding error and topic %q", info, c.topic)
		}
	}
	r := result{Fault: "malformed foreign messages", Adapter: c.adapter, Injection: c.injected,
		Sent: c.good + c.bad, Acked: c.good + c.bad, Received: len(goods) + len(infos),
		Duplicated: len(infos) - c.bad,
		Extra:      fmt.Sprintf("handled=%d dead_lettered=%d handler_calls=%d", len(goods), len(infos), deliveries)}
	r.Lost = max(0, r.Sent-r.Received)
	var lost []string
	if r.Lost > 0 {
		lost = []string{fmt.Sprintf("%d of %d", r.Lost, r.Sent)}
	}
	report(t, r, lost)
}

func TestMalformedKafkaRecords(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	topic := name("rel_malformed")
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deleteKafkaTopics(t, pub, topic, topic+".DLT")
	var subs []*kafka.Subscriber
	defer func() {
		for _, s := range subs {
			s.Close()
		}
	}()
	raw, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	bad := []*kgo.Record{
		{Value: []byte("not json"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte{0xff, 0xfe}}, {Key: "h", Value: []byte("dup")}, {Key: "\xc3(", Value: nil}}},
		{Value: nil, Headers: []kgo.RecordHeader{{Key: "", Value: []byte("empty key")}}},
		{Value: []byte("{"), Headers: []kgo.RecordHeader{{Key: kafka.HeaderID, Value: []byte{0, 1, 2, 0xff}}, {Key: "big", Value: bytes.Repeat([]byte{0xee}, 200<<10)}}},
		{Value: []byte{0xff, 0x00}, Headers: []kgo.RecordHeader{{Key: kafka.HeaderID, Value: nil}, {Key: kafka.HeaderID, Value: []byte("second id")}}},
	}
	c := &malformedCase{
		pub: pub, topic: topic, good: 8, bad: len(bad), adapter: "kafka",
		injected: "raw franz-go records (same key) with non-UTF-8, duplicate, empty and 200 KiB headers, binary ferry-id, bodies that are not JSON, between well-formed ones",
		newSub: func(group string) message.Subscriber {
			s, err := kafka.NewSubscriber(brokers, kafka.WithGroup(topic+"_"+group), kafka.WithTopicCreation(1, -1), fastGroup())
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
			return s
		},
	}
	c.produce = func(t *testing.T) {
		var rs []*kgo.Record
		for i := range c.good {
			rs = append(rs, &kgo.Record{Value: fmt.Appendf(nil, `{"n":%d}`, i)})
			if i < len(bad) {
				rs = append(rs, bad[i])
			}
		}
		for _, r := range rs {
			r.Topic, r.Key = topic, []byte("same-key")
		}
		if err := raw.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(context.Background(), topic); err != nil { // create the topic
		t.Fatal(err)
	}
	c.run(t)
}

func TestMalformedAMQPDeliveries(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := name("rel_malformed")
	pub, err := amqp.NewPublisher(url)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deleteAMQP(t, url, topic, topic+".g")
	deleteAMQP(t, url, topic+".DLT", topic+".DLT.dlt")
	ctx := context.Background()
	if err := pub.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Declare(ctx, topic+".DLT", "dlt"); err != nil {
		t.Fatal(err)
	}
	var subs []*amqp.Subscriber
	defer func() {
		for _, s := range subs {
			s.Close()
		}
	}()
	bad := []amqp091.Publishing{
		{Body: []byte("not json"), Headers: amqp091.Table{"x-death": []any{amqp091.Table{"count": int64(3), "reason": "rejected"}}, "bin": []byte{0xff}, amqp.TimeHeader: "yesterday", amqp.DefaultKeyHeader: "k"}},
		{Body: nil, Headers: amqp091.Table{"f": 1.5, "d": amqp091.Decimal{Scale: 2, Value: 1}, "t": time.Unix(0, 0), amqp.DefaultKeyHeader: "k"}},
		{Body: []byte("{"), MessageId: "\xff\xfe", Headers: amqp091.Table{"nested": amqp091.Table{"a": []any{nil, int8(1)}}, amqp.DefaultKeyHeader: "k", "x-delivery-count": "lots"}},
	}
	c := &malformedCase{
		pub: pub, topic: topic, good: 8, bad: len(bad), adapter: "amqp",
		injected: "raw amqp091 publishes (same ferry-key) with x-death tables, byte arrays, decimals, a non-numeric ferry-time and x-delivery-count, no message_id, bodies that are not JSON, between well-formed ones",
		newSub: func(group string) message.Subscriber {
			s, err := amqp.NewSubscriber(url, amqp.WithGroup(group))
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
			return s
		},
	}
	c.produce = func(t *testing.T) {
		conn, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		for i := range c.good {
			ps := []amqp091.Publishing{{Body: fmt.Appendf(nil, `{"n":%d}`, i), Headers: amqp091.Table{amqp.DefaultKeyHeader: "k"}}}
			if i < len(bad) {
				ps = append(ps, bad[i])
			}
			for _, p := range ps {
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topic, "k", true, false, p)
				if err != nil {
					t.Fatal(err)
				}
				if ok, err := dc.WaitContext(ctx); !ok || err != nil {
					t.Fatalf("raw publish not confirmed: %v", err)
				}
			}
		}
	}
	c.run(t)
}
