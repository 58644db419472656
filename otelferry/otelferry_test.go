package otelferry_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
	"github.com/ferrymsg/ferry/retry"
)

const (
	keyID     = attribute.Key("messaging.message.id")
	keySystem = attribute.Key("messaging.system")
)

// wantAttrs fails t for each attribute of sp that is not as wanted ("*":
// present with any non-empty value).
func wantAttrs(t *testing.T, sp tracetest.SpanStub, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got := attr(sp.Attributes, attribute.Key(k))
		if (v == "*" && got == "") || (v != "*" && got != v) {
			t.Errorf("span %q: attribute %s = %q, want %q (attributes %v)", sp.Name, k, got, v, sp.Attributes)
		}
	}
}

// TestTraceAcrossBroker: a message published through the wrapper and
// consumed through the middleware gives a process span linked to the send
// span (default) or, with WithParentContext, its child in the same trace;
// a message from a non-ferry producer with a hand-written traceparent is
// linked to (or continues) that trace; the spans carry the conventions'
// attributes.
func TestTraceAcrossBroker(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		linked := newSDK(t)
		parented := newSDK(t, otelferry.WithParentContext())
		topic := uniqueTopic(t, "trace")
		raw := b.pub(t, nil)
		pub, err := linked.tel.Publisher(raw)
		if err != nil {
			t.Fatal(err)
		}

		var mu sync.Mutex
		seen := map[string]message.Delivery{} // group/id -> delivery
		got := make(chan struct{}, 8)
		handler := func(group string) message.Handler {
			return func(_ context.Context, m *message.Message) error {
				mu.Lock()
				seen[group+"/"+m.ID] = m.Delivery
				mu.Unlock()
				got <- struct{}{}
				return nil
			}
		}
		// Groups of their own: the broker's group names are shared with
		// every other test.
		linkGroup, parentGroup := "link-"+topic, "parent-"+topic
		subscribe(t, b.sub(t, linkGroup, linked.tel), topic, message.Chain(handler("link"), linked.tel.Middleware()))
		subscribe(t, b.sub(t, parentGroup, parented.tel), topic, message.Chain(handler("parent"), parented.tel.Middleware()))

		ctx, root := linked.tp.Tracer("test").Start(context.Background(), "checkout")
		m1 := &message.Message{Key: "order-1", Payload: []byte("order")}
		if err := pub.Publish(ctx, topic, m1); err != nil {
			t.Fatal(err)
		}
		root.End()
		if !strings.HasPrefix(m1.Headers["traceparent"], "00-"+root.SpanContext().TraceID().String()) {
			t.Fatalf("traceparent %q is not in the caller's trace %s", m1.Headers["traceparent"], root.SpanContext().TraceID())
		}
		m2 := &message.Message{ID: "foreign-" + topic, Key: "order-2", Payload: []byte("from java"),
			Headers: map[string]string{"traceparent": foreignParent}}
		if err := raw.Publish(context.Background(), topic, m2); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			select {
			case <-got:
			case <-time.After(testWait):
				t.Fatalf("not every message reached both groups: %v", seen)
			}
		}

		send := linked.waitSpan(t, "send "+topic, keyID, m1.ID)
		if send.SpanKind != trace.SpanKindProducer || send.Parent.SpanID() != root.SpanContext().SpanID() {
			t.Errorf("send span: kind %v parent %v, want producer, child of the caller's span", send.SpanKind, send.Parent.SpanID())
		}
		wantAttrs(t, send, map[string]string{"messaging.system": b.system, "messaging.operation.name": "send",
			"messaging.operation.type": "send", "messaging.destination.name": topic})
		if b.system == "kafka" {
			wantAttrs(t, send, map[string]string{"messaging.kafka.message.key": "order-1"})
		}

		// Default: linked to the producer, in a trace of its own.
		p1 := linked.waitSpan(t, "process "+topic, keyID, m1.ID)
		if p1.SpanKind != trace.SpanKindConsumer {
			t.Errorf("process span kind %v, want consumer", p1.SpanKind)
		}
		if len(p1.Links) != 1 || p1.Links[0].SpanContext.SpanID() != send.SpanContext.SpanID() || p1.Links[0].SpanContext.TraceID() != send.SpanContext.TraceID() {
			t.Errorf("process span links %v, want one to the send span %v", p1.Links, send.SpanContext)
		}
		if p1.Parent.IsValid() {
			t.Errorf("process span has parent %v, want none (a link)", p1.Parent)
		}
		mu.Lock()
		d := seen["link/"+m1.ID]
		mu.Unlock()
		want := map[string]string{"messaging.system": b.system, "messaging.operation.name": "process",
			"messaging.operation.type": "process", "messaging.destination.name": topic,
			"messaging.consumer.group.name": linkGroup, "messaging.message.id": m1.ID, "ferry.message.attempt": "1"}
		switch b.system {
		case "kafka":
			want["messaging.destination.partition.id"] = strconv.Itoa(int(d.Partition))
			want["messaging.kafka.offset"] = strconv.FormatInt(d.Offset, 10)
			want["messaging.kafka.message.key"] = "order-1"
		case "rabbitmq":
			want["messaging.rabbitmq.destination.routing_key"] = d.RoutingKey
			want["messaging.rabbitmq.message.delivery_tag"] = strconv.FormatUint(d.DeliveryTag, 10)
			if d.RoutingKey == "" || d.DeliveryTag == 0 {
				t.Errorf("delivery lacks routing key or delivery tag: %+v", d)
			}
		default:
			want["messaging.destination.partition.id"] = strconv.Itoa(int(d.Partition))
		}
		wantAttrs(t, p1, want)
		if d.System != b.system {
			t.Errorf("Delivery.System = %q, want %q", d.System, b.system)
		}

		p2 := linked.waitSpan(t, "process "+topic, keyID, m2.ID)
		if len(p2.Links) != 1 || p2.Links[0].SpanContext.TraceID().String() != foreignTraceID || p2.Links[0].SpanContext.SpanID().String() != foreignSpanID {
			t.Errorf("foreign message's process span links %v, want one to %s", p2.Links, foreignParent)
		}

		// WithParentContext: one trace from the caller to the consumer.
		q1 := parented.waitSpan(t, "process "+topic, keyID, m1.ID)
		if q1.SpanContext.TraceID() != root.SpanContext().TraceID() || q1.Parent.SpanID() != send.SpanContext.SpanID() {
			t.Errorf("parent mode: process span in trace %s under %s, want trace %s under the send span %s",
				q1.SpanContext.TraceID(), q1.Parent.SpanID(), root.SpanContext().TraceID(), send.SpanContext.SpanID())
		}
		q2 := parented.waitSpan(t, "process "+topic, keyID, m2.ID)
		if q2.SpanContext.TraceID().String() != foreignTraceID || q2.Parent.SpanID().String() != foreignSpanID {
			t.Errorf("parent mode: foreign message's span in trace %s under %s, want it to continue %s",
				q2.SpanContext.TraceID(), q2.Parent.SpanID(), foreignParent)
		}
	})
}

// TestFailuresAndCounts: a failing message shows its attempts (retry
// events) and its dead-lettering (event, attribute, error status) in its
// process spans; the dead-lettered copy keeps the original trace context;
// the metric counts equal what was sent, consumed, retried and
// dead-lettered.
func TestFailuresAndCounts(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		s := newSDK(t)
		topic := uniqueTopic(t, "fail")
		dlt := topic + retry.DefaultDeadLetterSuffix
		pub, err := s.tel.Publisher(b.pub(t, s.tel))
		if err != nil {
			t.Fatal(err)
		}
		mw, err := retry.New(retry.WithMaxAttempts(3), retry.WithConstantBackoff(time.Millisecond),
			retry.WithDeadLetter(pub), retry.WithObserver(s.tel))
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64 // handler calls as the middleware sees them
		counting := func(next message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error { calls.Add(1); return next(ctx, m) }
		}
		ok := make(chan string, 8)
		h := func(_ context.Context, m *message.Message) error {
			if m.Key == "bad" {
				return errors.New("card declined")
			}
			ok <- m.ID
			return nil
		}
		dead := make(chan *message.Message, 1)
		subscribe(t, b.sub(t, "dlt-"+topic, s.tel), dlt, message.Chain(func(_ context.Context, m *message.Message) error {
			dead <- m
			return nil
		}, s.tel.Middleware()))
		subscribe(t, b.sub(t, "fail-"+topic, s.tel), topic, message.Chain(h, s.tel.Middleware(), counting, mw))

		const good = 4
		for i := range good {
			if err := pub.Publish(context.Background(), topic, &message.Message{Key: "k" + strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		bad := &message.Message{Key: "bad", Payload: []byte("x")}
		if err := pub.Publish(context.Background(), topic, bad); err != nil {
			t.Fatal(err)
		}
		for range good {
			select {
			case <-ok:
			case <-time.After(testWait):
				t.Fatal("good messages not handled")
			}
		}
		var copy *message.Message
		select {
		case copy = <-dead:
		case <-time.After(testWait):
			t.Fatal("the failing message was not dead-lettered")
		}

		sendBad := s.waitSpan(t, "send "+topic, keyID, bad.ID)
		if sc := sendBad.SpanContext; !strings.Contains(copy.Headers["traceparent"], sc.TraceID().String()+"-"+sc.SpanID().String()) {
			t.Errorf("dead-lettered copy's traceparent %q, want the original's context %s", copy.Headers["traceparent"], sc.SpanID())
		}
		dltSpan := s.waitSpan(t, "process "+dlt, keyID, bad.ID)
		if len(dltSpan.Links) != 1 || dltSpan.Links[0].SpanContext.SpanID() != sendBad.SpanContext.SpanID() {
			t.Errorf("the DLT consumer's span links %v, want the original send span %s", dltSpan.Links, sendBad.SpanContext.SpanID())
		}
		// The DLT publish is a send span in the failing process span's trace, linked to the original.
		dltSend := s.waitSpan(t, "send "+dlt, keyID, bad.ID)
		if len(dltSend.Links) != 1 || dltSend.Links[0].SpanContext.SpanID() != sendBad.SpanContext.SpanID() {
			t.Errorf("the dead-letter send span links %v, want the original send span", dltSend.Links)
		}

		// Attempts and dead-lettering in the failing message's process spans.
		var retries []string
		var deadLettered []tracetest.SpanStub
		testenv.WaitFor(t, testWait, "the dead-lettering span", func() bool {
			retries, deadLettered = nil, nil
			for _, sp := range s.spans.GetSpans() {
				if sp.Name != "process "+topic || attr(sp.Attributes, keyID) != bad.ID {
					continue
				}
				if et := attr(sp.Attributes, "error.type"); et != "" && et != "*errors.errorString" {
					t.Errorf("failed attempt's error.type %q, want the handler error's type", et)
				}
				for _, ev := range sp.Events {
					switch ev.Name {
					case otelferry.EventRetry:
						retries = append(retries, attr(ev.Attributes, otelferry.AttrAttempt))
					case otelferry.EventDeadLettered:
						deadLettered = append(deadLettered, sp)
					}
				}
			}
			return len(deadLettered) > 0
		})
		if strings.Join(retries, ",") != "1,2" {
			t.Errorf("retry events for attempts %v, want 1,2", retries)
		}
		if len(deadLettered) != 1 {
			t.Fatalf("%d spans with a dead-letter event, want 1", len(deadLettered))
		}
		dl := deadLettered[0]
		if dl.Status.Code != codes.Error || !strings.Contains(dl.Status.Description, "card declined") ||
			attr(dl.Attributes, otelferry.AttrDeadLettered) != "true" || attr(dl.Attributes, otelferry.AttrDeadLetterTopic) != dlt {
			t.Errorf("dead-lettering span: status %v, attributes %v", dl.Status, dl.Attributes)
		}

		// Counts.
		want := map[string]int64{
			"messaging.client.sent.messages:" + topic:      good + 1,
			"messaging.client.sent.messages:" + dlt:        1,
			"messaging.client.operation.duration:" + topic: good + 1,
			otelferry.MetricRetries + ":" + topic:          2,
			otelferry.MetricDeadLettered + ":" + topic:     1,
			otelferry.MetricPublishFailures + ":" + topic:  0,
			"messaging.client.consumed.messages:" + dlt:    1,
		}
		testenv.WaitFor(t, testWait, "the consumed count to reach the handler calls", func() bool {
			n := calls.Load()
			return s.sum(t, "messaging.client.consumed.messages", topic) == n &&
				s.sum(t, "messaging.process.duration", topic) == n
		})
		if n := calls.Load(); n < good+1 {
			t.Errorf("%d handler calls, want at least %d", n, good+1)
		}
		for k, v := range want {
			name, dest, _ := strings.Cut(k, ":")
			if got := s.sum(t, name, dest); got != v {
				t.Errorf("%s{destination=%s} = %d, want %d", name, dest, got, v)
			}
		}
	})
}

// TestLag: the consumer lag gauge rises to the backlog published while
// the consumer was stopped, and returns to 0 once it has caught up.
func TestLag(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		s := newSDK(t)
		topic := uniqueTopic(t, "lag")
		pub := b.pub(t, nil)
		group := "lag-" + topic
		lag := func() (int64, bool) { return s.tel.Lag(b.system, topic, group, 0) }
		waitLag := func(what string, cond func(int64) bool) {
			t.Helper()
			testenv.WaitFor(t, testWait, what, func() bool {
				n, ok := lag()
				return ok && cond(n) && cond(s.sum(t, otelferry.MetricConsumerLag, topic))
			})
		}

		handled := make(chan struct{}, 64)
		stop := subscribe(t, b.sub(t, group, s.tel), topic, func(context.Context, *message.Message) error {
			handled <- struct{}{}
			return nil
		})
		if err := pub.Publish(context.Background(), topic, &message.Message{Key: "k"}); err != nil {
			t.Fatal(err)
		}
		<-handled
		waitLag("lag 0 while consuming", func(n int64) bool { return n == 0 })
		stop()
		if _, ok := lag(); ok {
			t.Error("a stopped subscriber's partition keeps a lag")
		}

		const backlog = 20
		for i := range backlog {
			if err := pub.Publish(context.Background(), topic, &message.Message{Key: "k", Payload: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		gate := make(chan struct{})
		subscribe(t, b.sub(t, group, s.tel), topic, func(ctx context.Context, _ *message.Message) error {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
		var once sync.Once
		open := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(open) // before the subscription's stop, also when the test fails
		min := int64(backlog)
		if b.system == "rabbitmq" {
			min = backlog - 1 // one delivery in flight (prefetch 1) is not ready any more
		}
		waitLag("the backlog as lag", func(n int64) bool { return n >= min && n <= backlog })
		open()
		waitLag("lag back to 0", func(n int64) bool { return n == 0 })
	})
}
