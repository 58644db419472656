package codectest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry"
)

// Run runs the suite against the adapter that h describes, each test as a
// subtest named for the behaviour it checks (the list is in the package
// doc).
func Run(t *testing.T, h messagetest.Harness) {
	t.Helper()
	type test struct {
		name string
		run  func(t *testing.T, e *messagetest.Env)
	}
	tests := []test{
		{"undecodable payload is dead-lettered after exactly one attempt, byte-identical", testUndecodable},
		{"typed publish and typed handler round trip", testRoundTrip},
		{"typed handler panic is redelivered", func(t *testing.T, e *messagetest.Env) { testPanic(t, e, h.Features.NoKeyOrder) }},
	}
	if !h.Features.NoBatch {
		tests = append(tests, test{"batch: undecodable payload is dead-lettered once, the rest of the batch handled once", testBatch})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, messagetest.NewEnv(t, h)) })
	}
}

func testBatch(t *testing.T, e *messagetest.Env) {
	topic, group, dltGroup := e.Topic(), e.Group("batch"), e.Group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.Prepare(topic, group)
	e.Prepare(dlt, dltGroup)
	pub := e.Publisher()
	orders := newPublisher(t, pub, codec.JSON[Order]())

	var msgs, good []*message.Message
	var bad *message.Message
	for i := range 12 {
		key := fmt.Sprintf("k%d", i%3)
		if i == 4 {
			bad = &message.Message{ID: message.NewID(), Key: key, Payload: []byte("\x00\xffnot an order")}
			msgs = append(msgs, bad)
			continue
		}
		m := build(t, orders, key, Order{ID: fmt.Sprintf("o-%d", i), Quantity: i})
		msgs, good = append(msgs, m), append(good, m)
	}
	handled := messagetest.NewCollector() // what the typed function got
	h := codec.BatchHandler(codec.JSON[Order](), func(_ context.Context, vs []Order, ms []*message.Message) error {
		for i, m := range ms {
			if vs[i].ID == "" {
				return fmt.Errorf("message %s decoded to an empty order", m.ID)
			}
			handled.Record(m)
		}
		return nil
	})
	mw, err := retry.NewBatch(retry.WithMaxAttempts(5), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	if err != nil {
		t.Fatal(err)
	}
	sub, ok := e.Subscriber(e.Config(group, 2)).(message.BatchSubscriber)
	if !ok {
		t.Fatal("the harness's subscriber is not a message.BatchSubscriber; set Features.NoBatch")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.SubscribeBatch(ctx, topic, message.ChainBatch(h, mw), message.WithBatchMaxWait(20*time.Millisecond))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("SubscribeBatch returned %v, want nil", err)
			}
		case <-time.After(e.Timeout()):
			t.Errorf("SubscribeBatch did not return")
		}
	})
	dead := messagetest.NewCollector()
	e.Subscribe(e.Subscriber(e.Config(dltGroup, 1)), dlt, dead.Handler())

	e.Publish(pub, topic, msgs...)
	var ids []string
	for _, m := range good {
		ids = append(ids, m.ID)
	}
	handled.WaitAll(e, "the decodable orders", ids)
	dead.WaitAll(e, "the undecodable one on "+dlt, []string{bad.ID})
	dl := dead.Received(bad.ID)[0]
	if !bytes.Equal(dl.Payload, bad.Payload) || dl.Headers[retry.HeaderErrorType] != "*codec.DecodeError" || dl.Headers[retry.HeaderAttempts] != "1" {
		t.Errorf("dead-letter copy: payload %q headers %q; want the original bytes, *codec.DecodeError, 1 attempt", dl.Payload, dl.Headers)
	}
	if n := len(handled.Received(bad.ID)); n != 0 {
		t.Errorf("the undecodable message reached the typed function %d times", n)
	}
	for _, m := range good {
		if n := len(handled.Received(m.ID)); n != 1 {
			t.Errorf("order %s handled %d times, want exactly once (retry.NewBatch settles the dead-lettered one)", m.ID, n)
		}
	}
}

// Order is the payload type of the suite.
type Order struct {
	ID       string   `json:"id"`
	Customer string   `json:"customer"`
	Quantity int      `json:"quantity"`
	Items    []string `json:"items"`
}

// textCodec is a second codec whose content type the JSON codec refuses.
type textCodec struct{}

func (textCodec) ContentType() string             { return "text/plain; charset=utf-8" }
func (textCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (textCodec) Decode(b []byte) (string, error) { return string(b), nil }

// typedCalls records what the typed function was given.
type typedCalls struct {
	mu     sync.Mutex
	orders map[string][]Order // by message ID
}

func (c *typedCalls) record(id string, o Order) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.orders == nil {
		c.orders = map[string][]Order{}
	}
	c.orders[id] = append(c.orders[id], o)
}

func (c *typedCalls) get(id string) []Order {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Order(nil), c.orders[id]...)
}

// counting records every call of the handler chain below it.
func counting(c *messagetest.Collector) message.Middleware {
	return func(next message.Handler) message.Handler {
		return func(ctx context.Context, m *message.Message) error {
			c.Record(m)
			return next(ctx, m)
		}
	}
}

func newPublisher[T any](t *testing.T, pub message.Publisher, c codec.Codec[T], opts ...codec.PublisherOption) *codec.Publisher[T] {
	t.Helper()
	p, err := codec.NewPublisher(pub, c, opts...)
	if err != nil {
		t.Fatalf("codec.NewPublisher: %v", err)
	}
	return p
}

// build is p.Message with a fresh ID.
func build[T any](t *testing.T, p *codec.Publisher[T], key string, v T) *message.Message {
	t.Helper()
	m, err := p.Message(key, v)
	if err != nil {
		t.Fatal(err)
	}
	m.ID = message.NewID()
	return m
}

func testUndecodable(t *testing.T, e *messagetest.Env) {
	topic, group, dltGroup := e.Topic(), e.Group("work"), e.Group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.Prepare(topic, group)
	e.Prepare(dlt, dltGroup)
	pub := e.Publisher()
	orders := newPublisher(t, pub, codec.JSON[Order]())
	texts := newPublisher(t, pub, codec.Codec[string](textCodec{}))

	const key = "customer-1"
	good1 := build(t, orders, key, Order{ID: "o-1", Customer: "Zoë", Quantity: 2, Items: []string{"tea"}})
	garbage := &message.Message{ID: message.NewID(), Key: key, Payload: []byte("{\"id\": \xff\xfe\x00 not json"), Headers: map[string]string{"tenant": "acme"}}
	wrongType := build(t, texts, key, `{"id":"o-x"}`) // JSON bytes, but a text/plain content type
	good2 := build(t, orders, key, Order{ID: "o-2", Customer: "Ada", Quantity: 1})
	bad := []*message.Message{garbage, wrongType}

	chain := messagetest.NewCollector()
	typed := &typedCalls{}
	h := codec.Handler(codec.JSON[Order](), func(_ context.Context, o Order, m *message.Message) error {
		typed.record(m.ID, o)
		return nil
	})
	mw, err := retry.New(retry.WithMaxAttempts(5), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	if err != nil {
		t.Fatal(err)
	}
	e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, message.Chain(h, mw, counting(chain)))
	dead := messagetest.NewCollector()
	e.Subscribe(e.Subscriber(e.Config(dltGroup, 1)), dlt, dead.Handler())

	e.Publish(pub, topic, good1, garbage, wrongType, good2)
	chain.WaitAll(e, "the good orders", []string{good1.ID, good2.ID})
	dead.WaitAll(e, "dead-letter copies on "+dlt, []string{garbage.ID, wrongType.ID})

	// good2 has the same key and comes last: every call before it is final.
	e.Eventually("the typed function to get both good orders", func() (bool, string) {
		return len(typed.get(good1.ID)) == 1 && len(typed.get(good2.ID)) == 1, fmt.Sprintf("o-1 %d calls, o-2 %d calls", len(typed.get(good1.ID)), len(typed.get(good2.ID)))
	})
	if o := typed.get(good1.ID)[0]; o.ID != "o-1" || o.Customer != "Zoë" || o.Quantity != 2 || len(o.Items) != 1 || o.Items[0] != "tea" {
		t.Errorf("typed function got %+v for o-1", o)
	}
	for _, m := range bad {
		if n := len(chain.Received(m.ID)); n != 1 {
			t.Errorf("undecodable message %s reached the handler chain %d times, want exactly 1", m.Headers, n)
		}
		if n := len(typed.get(m.ID)); n != 0 {
			t.Errorf("undecodable message reached the typed function %d times", n)
		}
		copies := dead.Received(m.ID)
		dl := copies[0]
		if !bytes.Equal(dl.Payload, m.Payload) {
			t.Errorf("dead-letter payload %q, want the original bytes %q", dl.Payload, m.Payload)
		}
		if dl.Key != m.Key {
			t.Errorf("dead-letter key %q, want %q", dl.Key, m.Key)
		}
		for k, v := range m.Headers {
			if codec.ContentType(m) != "" && (k == codec.HeaderContentType || k == codec.HeaderAMQPContentType) {
				continue // checked below, in the broker's own place
			}
			if dl.Headers[k] != v {
				t.Errorf("dead-letter header %s = %q, want the original's %q", k, dl.Headers[k], v)
			}
		}
		if codec.ContentType(dl) != codec.ContentType(m) {
			t.Errorf("dead-letter content type %q, want %q", codec.ContentType(dl), codec.ContentType(m))
		}
		errText := dl.Headers[retry.HeaderErrorMessage]
		if !strings.HasPrefix(errText, "codec: message "+`"`+m.ID+`"`) || dl.Headers[retry.HeaderErrorType] != "*codec.DecodeError" ||
			dl.Headers[retry.HeaderAttempts] != "1" || dl.Headers[retry.HeaderOriginalTopic] != topic || dl.Headers[retry.HeaderOriginalGroup] != group {
			t.Errorf("dead-letter headers %q: want the decode error, type *codec.DecodeError, 1 attempt, topic %s group %s", dl.Headers, topic, group)
		}
	}
	if txt := dead.Received(wrongType.ID)[0].Headers[retry.HeaderErrorMessage]; !strings.Contains(txt, "does not read text/plain") {
		t.Errorf("content type refusal %q does not say which type", txt)
	}
	if txt := dead.Received(garbage.ID)[0].Headers[retry.HeaderErrorMessage]; !strings.Contains(txt, "invalid character") {
		t.Errorf("decode error %q does not carry encoding/json's error", txt)
	}
	if n := len(dead.Received(good1.ID)) + len(dead.Received(good2.ID)); n != 0 {
		t.Errorf("%d good orders dead-lettered", n)
	}
}

func testRoundTrip(t *testing.T, e *messagetest.Env) {
	topic, group := e.Topic(), e.Group("typed")
	e.Prepare(topic, group)
	pub := e.Publisher()
	orders := newPublisher(t, pub, codec.JSON[Order](), codec.WithTypeID("com.example.Order"))

	type got struct {
		o Order
		m *message.Message
	}
	var mu sync.Mutex
	seen := map[string]got{}
	h := codec.Handler(codec.JSON[Order](), func(_ context.Context, o Order, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[o.ID] = got{o, m.Clone()}
		return nil
	})
	e.Subscribe(e.Subscriber(e.Config(group, 2)), topic, h)

	want := []Order{
		{ID: "o-1", Customer: "Zoë", Quantity: 1, Items: []string{"a", "b"}},
		{ID: "o-2", Customer: "名前", Quantity: 0, Items: []string{}},
		{ID: "o-3", Customer: `quote " and \ backslash`, Quantity: -7},
	}
	for _, o := range want {
		if err := orders.Publish(e.Context(), topic, o.Customer, o); err != nil {
			t.Fatalf("Publish %s: %v", o.ID, err)
		}
	}
	e.Eventually("every order decoded", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == len(want), fmt.Sprintf("%d of %d", len(seen), len(want))
	})
	mu.Lock()
	defer mu.Unlock()
	for _, w := range want {
		g := seen[w.ID]
		if g.o.ID != w.ID || g.o.Customer != w.Customer || g.o.Quantity != w.Quantity || len(g.o.Items) != len(w.Items) {
			t.Errorf("decoded %+v, published %+v", g.o, w)
		}
		if g.m.Key != w.Customer || codec.ContentType(g.m) != codec.ContentTypeJSON || g.m.Headers[codec.HeaderTypeID] != "com.example.Order" {
			t.Errorf("%s: key %q, headers %q; want the key, content type application/json and __TypeId__", w.ID, g.m.Key, g.m.Headers)
		}
	}
}

func testPanic(t *testing.T, e *messagetest.Env, noKeyOrder bool) {
	topic, group := e.Topic(), e.Group("panics")
	e.Prepare(topic, group)
	pub := e.Publisher()
	orders := newPublisher(t, pub, codec.JSON[Order]())
	first := build(t, orders, "k", Order{ID: "o-panic"})
	second := build(t, orders, "k", Order{ID: "o-after"})

	calls := messagetest.NewCollector()
	var mu sync.Mutex
	var order []string
	h := codec.Handler(codec.JSON[Order](), func(_ context.Context, o Order, m *message.Message) error {
		calls.Record(m)
		if o.ID == "o-panic" && m.Delivery.Attempt == 1 {
			panic(errors.New("codectest: handler bug"))
		}
		mu.Lock()
		order = append(order, o.ID)
		mu.Unlock()
		return nil
	})
	e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, h)
	e.Publish(pub, topic, first, second)
	calls.WaitAll(e, "both orders", []string{first.ID, second.ID})
	e.Eventually("the panicking order to be redelivered and handled", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 2, fmt.Sprintf("handled %v", order)
	})
	got := calls.Received(first.ID)
	if len(got) != 2 || got[1].Delivery.Attempt < 2 {
		t.Errorf("panicking order: %d deliveries (attempts %v), want 2, the second with Attempt >= 2", len(got), attempts(got))
	}
	mu.Lock()
	defer mu.Unlock()
	if !noKeyOrder && (order[0] != "o-panic" || order[1] != "o-after") { // Features.NoKeyOrder: no order to check
		t.Errorf("handled in order %v, want the redelivered o-panic before o-after (same key)", order)
	}
}

func attempts(ms []*message.Message) []int {
	var a []int
	for _, m := range ms {
		a = append(a, m.Delivery.Attempt)
	}
	return a
}
