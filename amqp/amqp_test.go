package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

const wait = 30 * time.Second

func topicName(t testing.TB) string {
	return fmt.Sprintf("ferrytest.%s.%08x", strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()), rand.Uint32())
}

func newPub(t testing.TB, url string, opts ...amqp.PublisherOption) *amqp.Publisher {
	t.Helper()
	p, err := amqp.NewPublisher(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newSub(t testing.TB, url string, opts ...amqp.SubscriberOption) *amqp.Subscriber {
	t.Helper()
	s, err := amqp.NewSubscriber(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// deleteTopology removes a test's exchange and queues.
func deleteTopology(t testing.TB, url, topic string, queues ...string) {
	t.Cleanup(func() { deleteNow(url, topic, queues...) })
}

func deleteNow(url, topic string, queues ...string) {
	c, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	var ch *amqp091.Channel
	do := func(f func(*amqp091.Channel) error) {
		if ch == nil || ch.IsClosed() {
			if ch, err = c.Channel(); err != nil {
				ch = nil
				return
			}
		}
		_ = f(ch) // a missing queue or exchange closes the channel; the next call reopens one
	}
	// Each name is a group's queue name: its competing-mode queue, or the
	// base of its sharded topology (shard queues, router, unsharded and
	// members exchanges).
	for _, q := range queues {
		names := []string{q}
		for i := 0; i < amqp.ShardBuckets; i++ {
			names = append(names, q+"."+strconv.Itoa(i))
		}
		for _, n := range names {
			do(func(ch *amqp091.Channel) error { _, err := ch.QueueDelete(n, false, false, false); return err })
		}
		for _, x := range []string{q, q + ".unsharded", q + ".members"} {
			do(func(ch *amqp091.Channel) error { return ch.ExchangeDelete(x, false, false) })
		}
	}
	do(func(ch *amqp091.Channel) error { return ch.ExchangeDelete(topic, false, false) })
}

// collector is a handler that records what it got. ch is a wake-up for
// the waits (they re-check after each): a non-blocking send, so that a
// test that stopped waiting never blocks the handlers (and with them the
// subscriber's shutdown).
type collector struct {
	mu   sync.Mutex
	msgs []*message.Message
	ch   chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) handle(_ context.Context, m *message.Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) waitN(t testing.TB, n int) []*message.Message {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		got := len(c.msgs)
		c.mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("got %d messages, want %d", got, n)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs...)
}

// waitIDs waits until every id was delivered (duplicates can make up a
// count, so counting deliveries is not enough) and returns the deliveries.
func (c *collector) waitIDs(t testing.TB, ids []string) []*message.Message {
	t.Helper()
	missing := func() []string {
		seen := map[string]bool{}
		c.mu.Lock()
		for _, m := range c.msgs {
			seen[m.ID] = true
		}
		c.mu.Unlock()
		var out []string
		for _, id := range ids {
			if !seen[id] {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.After(wait)
	for m := missing(); len(m) > 0; m = missing() {
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("%d of %d confirmed messages not delivered, first %s", len(m), len(ids), m[0])
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs...)
}

// run starts Subscribe and returns a stop func that cancels it and checks
// it returned nil.
func run(t testing.TB, s *amqp.Subscriber, topic string, h message.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, topic, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Subscribe returned %v after cancel, want nil", err)
				}
			case <-time.After(wait):
				t.Errorf("Subscribe did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestPublishSubscribeRoundTrip(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	p := newPub(t, url)
	s := newSub(t, url, amqp.WithGroup("g"), amqp.WithConcurrency(4))
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	at := time.UnixMilli(1700000000123)
	in := &message.Message{ID: "id-1", Key: "k1", Payload: []byte("hello"), Headers: map[string]string{"a": "b"}, Time: at}
	if err := p.Publish(ctx, topic, in); err != nil {
		t.Fatal(err)
	}
	got := c.waitN(t, 1)[0]
	if got.ID != "id-1" || got.Key != "k1" || string(got.Payload) != "hello" || got.Headers["a"] != "b" || !got.Time.Equal(at) {
		t.Fatalf("got %+v", got)
	}
	for h := range got.Headers {
		if h == "ferry-key" || h == amqp.TimeHeader || strings.HasPrefix(h, amqp.ShardHeaderPrefix) {
			t.Errorf("%s header leaked into Headers: %v", h, got.Headers)
		}
	}
	// Partition is the shard: bucket of the key modulo the shard count.
	wantShard := int32(amqp.ShardBucket("k1") % amqp.DefaultShards)
	if got.Delivery.Topic != topic || got.Delivery.Group != "g" || got.Delivery.Attempt != 1 || got.Delivery.DeliveryTag == 0 || got.Delivery.Partition != wantShard || got.Delivery.Offset != -1 {
		t.Errorf("delivery metadata %+v", got.Delivery)
	}
}

func TestUnroutablePublishFails(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	p := newPub(t, url, amqp.WithBindingKey("order.*"))
	// Only "order.*" is bound: the second message has no route.
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	msgs := []*message.Message{{Key: "order.created"}, {Key: "invoice.paid"}, {Key: "order.paid"}}
	err := p.Publish(ctx, topic, msgs...)
	if !errors.Is(err, message.ErrUnroutable) {
		t.Fatalf("Publish = %v, want ErrUnroutable", err)
	}
	var pe *message.PublishError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Index != 1 || pe.Total != 3 {
		t.Fatalf("PublishError = %+v", pe)
	}
	// With no queue at all, everything is unroutable.
	bare := topicName(t)
	deleteTopology(t, url, bare)
	err = p.Publish(ctx, bare, &message.Message{Payload: []byte("x")})
	if !errors.Is(err, message.ErrUnroutable) {
		t.Fatalf("Publish to an exchange with no queue = %v, want ErrUnroutable", err)
	}
}

func TestWildcardBindings(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".star", topic+".hash")
	ctx := context.Background()
	star := newSub(t, url, amqp.WithGroup("star"), amqp.WithBindingKey("order.*"))
	hash := newSub(t, url, amqp.WithGroup("hash"), amqp.WithBindingKey("order.#"))
	for _, s := range []*amqp.Subscriber{star, hash} {
		if err := s.Declare(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	cs, ch := newCollector(), newCollector()
	run(t, star, topic, cs.handle)
	run(t, hash, topic, ch.handle)
	p := newPub(t, url)
	for _, k := range []string{"order.created", "order.eu.created", "order"} {
		if err := p.Publish(ctx, topic, &message.Message{Key: k}); err != nil {
			t.Fatalf("publish %q: %v", k, err)
		}
	}
	// "order" matches order.# (# is zero or more words) but not order.*.
	keys := func(ms []*message.Message) map[string]bool {
		out := map[string]bool{}
		for _, m := range ms {
			out[m.Key] = true
		}
		return out
	}
	gotHash := keys(ch.waitN(t, 3))
	for _, k := range []string{"order.created", "order.eu.created", "order"} {
		if !gotHash[k] {
			t.Errorf("order.# did not get %q: %v", k, gotHash)
		}
	}
	cs.waitN(t, 1)
	// Publish a marker that only order.* gets, so we know nothing else
	// is still on its way to it.
	if err := p.Publish(ctx, topic, &message.Message{Key: "order.marker"}); err != nil {
		t.Fatal(err)
	}
	gotStar := keys(cs.waitN(t, 2))
	if !gotStar["order.created"] || !gotStar["order.marker"] || len(gotStar) != 2 {
		t.Errorf("order.* got %v, want order.created and order.marker only", gotStar)
	}
}

func TestForeignProducerWithNonStringHeaders(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	s := newSub(t, url, amqp.WithGroup("g"))
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	raw, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	err = ch.PublishWithContext(ctx, topic, "whatever", true, false, amqp091.Publishing{
		Body:      []byte("from java"),
		Timestamp: ts,
		Headers: amqp091.Table{
			"x-death": []any{amqp091.Table{"count": int64(3), "reason": "rejected", "queue": "q", "time": ts, "routing-keys": []any{"a"}}},
			"int":     int32(42),
			"bool":    true,
			"bytes":   []byte("raw"),
			"float":   1.5,
			"when":    ts,
			"str":     "s",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := c.waitN(t, 1)[0]
	if string(got.Payload) != "from java" || got.Key != "" || !got.Time.Equal(ts) {
		t.Fatalf("got %+v", got)
	}
	want := map[string]string{"int": "42", "bool": "true", "bytes": "raw", "float": "1.5", "when": "2024-01-02T03:04:05Z", "str": "s"}
	for k, v := range want {
		if got.Headers[k] != v {
			t.Errorf("header %q = %q, want %q", k, got.Headers[k], v)
		}
	}
	xd := got.Headers["x-death"]
	for _, part := range []string{`"count":3`, `"reason":"rejected"`, `"time":"2024-01-02T03:04:05Z"`, `"routing-keys":["a"]`} {
		if !strings.Contains(xd, part) {
			t.Errorf("x-death %s lacks %s", xd, part)
		}
	}
}

func TestInvalidInputPublishesNothing(t *testing.T) {
	url := testenv.NeedAMQP(t)
	p := newPub(t, url, amqp.WithMaxPayload(10))
	ctx := context.Background()
	for _, topic := range []string{"", "amq.direct", "has space", strings.Repeat("x", 256), "slash/no"} {
		if err := p.Publish(ctx, topic, &message.Message{}); !errors.Is(err, message.ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
	topic := topicName(t)
	m1 := &message.Message{Payload: []byte("ok")}
	err := p.Publish(ctx, topic, m1, &message.Message{Payload: make([]byte, 11)})
	if !errors.Is(err, message.ErrMessageTooLarge) {
		t.Errorf("oversized = %v, want ErrMessageTooLarge", err)
	}
	if m1.ID != "" {
		t.Errorf("a rejected batch was changed: ID %q filled in", m1.ID)
	}
	if err := p.Publish(ctx, topic, m1, nil); !errors.Is(err, message.ErrInvalidMessage) {
		t.Errorf("nil message = %v, want ErrInvalidMessage", err)
	}
	p.Close()
	if err := p.Publish(ctx, topic, m1); !errors.Is(err, message.ErrClosed) {
		t.Errorf("after Close = %v, want ErrClosed", err)
	}
}
