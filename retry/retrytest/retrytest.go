package retrytest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry"
)

// Run runs the end-to-end tests of the retry middleware against the
// adapter that h describes, each as a subtest named for the behaviour it
// checks (the list is in the package doc). Call it beside messagetest.Run
// with the same harness.
func Run(t *testing.T, h messagetest.Harness) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *messagetest.Env)
	}{
		{"always-failing message is dead-lettered after exactly N attempts while later messages keep flowing", testExhausted},
		{"permanent error goes straight to the dead-letter topic with Spring headers", testPermanentSpring},
		{"failing dead-letter publish redelivers instead of losing the message", testDeadLetterPublishFails},
		{"replay brings dead-lettered messages back to their topic", testReplay},
		{"a retrying key holds no worker: other keys flow during its backoff", func(t *testing.T, e *messagetest.Env) {
			testRetryHoldsNoWorker(t, e, h.Features.NoKeyOrder)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, messagetest.NewEnv(t, h)) })
	}
}

// handled returns how many times c recorded id and the last delivery of it.
func handled(c *messagetest.Collector, id string) (int, *message.Message) {
	got := c.Received(id)
	if len(got) == 0 {
		return 0, nil
	}
	return len(got), got[len(got)-1]
}

func newMiddleware(t *testing.T, opts ...retry.Option) message.Middleware {
	t.Helper()
	mw, err := retry.New(opts...)
	if err != nil {
		t.Fatalf("retry.New: %v", err)
	}
	return mw
}

// waitDeadLetter waits until the collector has a copy of id and returns the
// first one.
func waitDeadLetter(t *testing.T, e *messagetest.Env, c *messagetest.Collector, dlt, id string) *message.Message {
	t.Helper()
	c.WaitAll(e, "dead-letter copy on "+dlt, []string{id})
	return c.Received(id)[0]
}

// checkPosition checks the dead-letter copy's partition and offset against
// the delivery the handler saw.
func checkPosition(t *testing.T, info retry.DeadLetterInfo, orig *message.Message) {
	t.Helper()
	wantP, wantO := orig.Delivery.Partition, orig.Delivery.Offset
	if wantP < 0 {
		wantP = -1
	}
	if wantO < 0 {
		wantO = -1
	}
	if info.Partition != wantP || info.Offset != wantO {
		t.Errorf("dead-letter position = partition %d offset %d, want %d/%d (the delivery's)", info.Partition, info.Offset, wantP, wantO)
	}
}

func testExhausted(t *testing.T, e *messagetest.Env) {
	topic, group, dltGroup := e.Topic(), e.Group("work"), e.Group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.Prepare(topic, group)
	e.Prepare(dlt, dltGroup)
	pub := e.Publisher()

	const attempts = 3
	counter, good := messagetest.NewCollector(), messagetest.NewCollector()
	h := func(_ context.Context, m *message.Message) error {
		if m.Headers["kind"] == "poison" {
			counter.Record(m)
			return errors.New("poison: always fails")
		}
		good.Record(m)
		return nil
	}
	mw := newMiddleware(t, retry.WithMaxAttempts(attempts), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	e.Subscribe(e.Subscriber(e.Config(group, 2)), topic, message.Chain(h, mw))
	dead := messagetest.NewCollector()
	e.Subscribe(e.Subscriber(e.Config(dltGroup, 1)), dlt, dead.Handler())

	poison := &message.Message{ID: message.NewID(), Key: "k1", Payload: []byte("bad"), Headers: map[string]string{"kind": "poison", "app": "x"}}
	msgs := []*message.Message{poison}
	var ids []string
	for i := range 10 {
		m := &message.Message{ID: message.NewID(), Key: "k" + strconv.Itoa(1+i%2), Payload: []byte("good " + strconv.Itoa(i))}
		msgs = append(msgs, m)
		ids = append(ids, m.ID)
	}
	e.Publish(pub, topic, msgs...)

	good.WaitAll(e, "messages after the poison one", ids)
	dl := waitDeadLetter(t, e, dead, dlt, poison.ID)
	// The good messages of key k1 come after the poison one, so it was
	// settled before they ran: its call count is final.
	calls, orig := handled(counter, poison.ID)
	if calls != attempts {
		t.Errorf("poison message handled %d times, want exactly %d", calls, attempts)
	}
	if dl.Key != poison.Key || string(dl.Payload) != "bad" || dl.Headers["app"] != "x" || dl.Headers["kind"] != "poison" {
		t.Errorf("dead-letter copy = key %q payload %q headers %v; want the original's", dl.Key, dl.Payload, dl.Headers)
	}
	hd := dl.Headers
	for name, want := range map[string]string{
		retry.HeaderOriginalTopic: topic,
		retry.HeaderOriginalGroup: group,
		retry.HeaderAttempts:      strconv.Itoa(attempts),
		retry.HeaderErrorMessage:  "poison: always fails",
	} {
		if hd[name] != want {
			t.Errorf("header %s = %q, want %q", name, hd[name], want)
		}
	}
	info, err := retry.ParseDeadLetter(dl)
	if err != nil {
		t.Fatalf("ParseDeadLetter: %v (headers %v)", err, hd)
	}
	checkPosition(t, info, orig)
	if info.FirstFailure.IsZero() || info.LastFailure.Before(info.FirstFailure) {
		t.Errorf("failure times first %v last %v", info.FirstFailure, info.LastFailure)
	}
}

func testPermanentSpring(t *testing.T, e *messagetest.Env) {
	topic, group, dltGroup := e.Topic(), e.Group("work"), e.Group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.Prepare(topic, group)
	e.Prepare(dlt, dltGroup)
	pub := e.Publisher()

	counter := messagetest.NewCollector()
	h := func(_ context.Context, m *message.Message) error {
		counter.Record(m)
		return retry.Permanent(errors.New("invalid order"))
	}
	mw := newMiddleware(t, retry.WithMaxAttempts(5), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub), retry.SpringHeaders())
	e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, message.Chain(h, mw))
	dead := messagetest.NewCollector()
	e.Subscribe(e.Subscriber(e.Config(dltGroup, 1)), dlt, dead.Handler())

	sent := time.UnixMilli(time.Now().UnixMilli())
	m := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("p"), Time: sent}
	e.Publish(pub, topic, m)
	dl := waitDeadLetter(t, e, dead, dlt, m.ID)

	calls, orig := handled(counter, m.ID)
	if calls != 1 {
		t.Errorf("permanent error: handled %d times, want 1", calls)
	}
	for name, want := range map[string]string{
		retry.HeaderSpringExceptionFQCN:         "*retry.PermanentError",
		retry.HeaderSpringExceptionCauseFQCN:    "*errors.errorString",
		retry.HeaderSpringExceptionStacktrace:   "*retry.PermanentError: invalid order\nCaused by: *errors.errorString: invalid order\n",
		retry.HeaderSpringOriginalTimestampType: "CreateTime",
	} {
		if got := dl.Headers[name]; got != want {
			t.Errorf("Spring header %s = %q, want %q", name, got, want)
		}
	}
	info, err := retry.ParseDeadLetter(dl)
	if err != nil {
		t.Fatalf("ParseDeadLetter: %v (headers %q)", err, dl.Headers)
	}
	if !info.Spring || info.Topic != topic || info.Group != group || info.Error != "invalid order" || info.Attempts != 1 {
		t.Errorf("Spring dead-letter info = %+v; want topic %q group %q error %q attempts 1", info, topic, group, "invalid order")
	}
	if !info.OriginalTime.Equal(sent) {
		t.Errorf("kafka_dlt-original-timestamp = %v, want %v (8 big-endian bytes must survive the broker)", info.OriginalTime, sent)
	}
	checkPosition(t, info, orig)
	if _, ok := dl.Headers[retry.HeaderOriginalTopic]; ok {
		t.Errorf("ferry's original-topic header written in the Spring profile")
	}
}

// failingPublisher fails the first n publishes to topic and passes the
// rest (and every other topic) to the wrapped publisher. Close does not
// close the wrapped publisher.
type failingPublisher struct {
	message.Publisher
	topic string

	mu     sync.Mutex
	n      int
	failed int
	calls  int
}

var errInjected = errors.New("retrytest: injected publish failure")

func (p *failingPublisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if topic == p.topic || p.topic == "" {
		p.mu.Lock()
		p.calls++
		fail := p.failed < p.n
		if fail {
			p.failed++
		}
		p.mu.Unlock()
		if fail {
			return errInjected
		}
	}
	return p.Publisher.Publish(ctx, topic, msgs...)
}

func (p *failingPublisher) Close() error { return nil }

func testDeadLetterPublishFails(t *testing.T, e *messagetest.Env) {
	topic, group, dltGroup := e.Topic(), e.Group("work"), e.Group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.Prepare(topic, group)
	e.Prepare(dlt, dltGroup)
	pub := e.Publisher()
	const failures, attempts = 2, 2
	fpub := &failingPublisher{Publisher: pub, topic: dlt, n: failures}

	counter, good := messagetest.NewCollector(), messagetest.NewCollector()
	h := func(_ context.Context, m *message.Message) error {
		if m.Headers["kind"] == "poison" {
			counter.Record(m)
			return errors.New("always fails")
		}
		good.Record(m)
		return nil
	}
	var (
		evMu   sync.Mutex
		events []retry.DeadLetterEvent
	)
	mw := newMiddleware(t, retry.WithMaxAttempts(attempts), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(fpub),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) {
			evMu.Lock()
			events = append(events, ev)
			evMu.Unlock()
		}))
	e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, message.Chain(h, mw))
	dead := messagetest.NewCollector()
	e.Subscribe(e.Subscriber(e.Config(dltGroup, 1)), dlt, dead.Handler())

	poison := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("bad"), Headers: map[string]string{"kind": "poison"}}
	after := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("good")}
	e.Publish(pub, topic, poison, after)

	good.WaitAll(e, "the message after the poison one", []string{after.ID})
	dl := waitDeadLetter(t, e, dead, dlt, poison.ID)
	if calls, _ := handled(counter, poison.ID); calls != attempts {
		t.Errorf("poison message handled %d times, want %d (redeliveries after a failed dead-letter publish only retry the publish)", calls, attempts)
	}
	if dl.Headers[retry.HeaderAttempts] != strconv.Itoa(attempts) {
		t.Errorf("attempts header %q, want %d", dl.Headers[retry.HeaderAttempts], attempts)
	}
	// OnDeadLetter runs after the publish returned, so a fast consumer of
	// the dead-letter topic can see the copy before the last event.
	e.Eventually("the successful dead-letter publish's event", func() (bool, string) {
		evMu.Lock()
		defer evMu.Unlock()
		return len(events) >= failures+1, fmt.Sprintf("%d dead-letter publishes, want at least %d", len(events), failures+1)
	})
	evMu.Lock()
	defer evMu.Unlock()
	for i, ev := range events[:failures] {
		if !errors.Is(ev.PublishErr, errInjected) {
			t.Errorf("dead-letter publish %d: error %v, want the injected failure", i+1, ev.PublishErr)
		}
	}
	if last := events[len(events)-1]; last.PublishErr != nil {
		t.Errorf("last dead-letter publish failed: %v", last.PublishErr)
	}
	if a := events[failures].Message.Delivery.Attempt; a < failures+1 {
		t.Errorf("successful dead-letter publish on delivery attempt %d, want >= %d (the subscriber redelivers after each failed publish)", a, failures+1)
	}
}

func testReplay(t *testing.T, e *messagetest.Env) {
	topic, group, replayGroup := e.Topic(), e.Group("work"), e.Group("replay")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.Prepare(topic, group)
	e.Prepare(dlt, replayGroup)
	pub := e.Publisher()

	var broken atomic.Bool
	broken.Store(true)
	healed := messagetest.NewCollector()
	h := func(_ context.Context, m *message.Message) error {
		if broken.Load() {
			return errors.New("downstream unavailable")
		}
		healed.Record(m)
		return nil
	}
	var deadLettered atomic.Int64
	mw := newMiddleware(t, retry.WithMaxAttempts(1), retry.WithDeadLetter(pub),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) {
			if ev.PublishErr == nil {
				deadLettered.Add(1)
			}
		}))
	e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, message.Chain(h, mw))

	const n = 3
	var msgs []*message.Message
	var ids []string
	for i := range n {
		m := &message.Message{ID: message.NewID(), Key: "k" + strconv.Itoa(i), Payload: []byte("p" + strconv.Itoa(i)), Headers: map[string]string{"app": "x"}}
		msgs = append(msgs, m)
		ids = append(ids, m.ID)
	}
	e.Publish(pub, topic, msgs...)
	e.Eventually("3 messages dead-lettered", func() (bool, string) {
		d := deadLettered.Load()
		return d == n, fmt.Sprintf("%d", d)
	})
	broken.Store(false)

	// A replay whose republish fails leaves the message on the DLT.
	fpub := &failingPublisher{Publisher: pub, n: 1 << 30}
	stats, err := retry.Replay(e.Context(), e.Subscriber(e.Config(replayGroup, 1)), fpub, dlt, retry.WithIdleTimeout(e.Timeout()))
	if !errors.Is(err, errInjected) {
		t.Fatalf("Replay with a failing publisher: %v, want the injected error", err)
	}
	if stats.Replayed != 0 {
		t.Fatalf("Replay with a failing publisher: stats %+v", stats)
	}

	stats, err = retry.Replay(e.Context(), e.Subscriber(e.Config(replayGroup, 1)), pub, dlt, retry.WithLimit(n), retry.WithIdleTimeout(e.Timeout()))
	if err != nil {
		t.Fatalf("Replay: %v (stats %+v)", err, stats)
	}
	if stats.Replayed != n {
		t.Fatalf("Replay: stats %+v, want %d replayed", stats, n)
	}
	healed.WaitAll(e, "replayed messages", ids)
	for i, id := range ids {
		got := healed.Received(id)[0]
		if string(got.Payload) != string(msgs[i].Payload) || got.Key != msgs[i].Key || got.Headers["app"] != "x" {
			t.Errorf("replayed %s: key %q payload %q headers %v, want the original's", id, got.Key, got.Payload, got.Headers)
		}
		for k := range got.Headers {
			if strings.HasPrefix(k, retry.HeaderPrefix) || strings.HasPrefix(k, retry.HeaderSpringPrefix) {
				t.Errorf("replayed %s still has dead-letter header %s", id, k)
			}
		}
	}
}

// testRetryHoldsNoWorker: at concurrency 1, key A's first message fails 3
// times with a 1 s backoff. The 1,000 messages of other keys published
// after it are all handled before A's second attempt starts (the wait is
// the dispatcher's, not a sleep in the handler, which would hold the only
// worker), and A's message is then handled, attempt by attempt, before
// the later messages of key A. To make "after" certain, the others are
// published while A's first attempt runs, and that attempt fails only
// once they are all published.
func testRetryHoldsNoWorker(t *testing.T, e *messagetest.Env, noKeyOrder bool) {
	topic, group := e.Topic(), e.Group("work")
	e.Prepare(topic, group)
	pub := e.Publisher()

	const (
		others   = 1000
		failures = 3
		backoff  = time.Second
	)
	a1 := &message.Message{ID: message.NewID(), Key: "A", Payload: []byte("a1")}
	laterA := []*message.Message{
		{ID: message.NewID(), Key: "A", Payload: []byte("a2")},
		{ID: message.NewID(), Key: "A", Payload: []byte("a3")},
	}
	var (
		mu       sync.Mutex
		handled  int      // messages of other keys handled
		aLog     []string // key A's handler calls: "<payload>#<attempt>"
		atSecond = -1     // handled when A's second attempt started
		// For the log: when A's first attempt failed, the last other
		// message was handled, and A's second attempt started.
		failedAt, othersDoneAt, secondAt time.Time
	)
	published := make(chan struct{})
	firstCall := make(chan struct{}, 1)
	good := messagetest.NewCollector()
	h := func(ctx context.Context, m *message.Message) error {
		if m.Key != "A" {
			mu.Lock()
			if handled++; handled == others {
				othersDoneAt = time.Now()
			}
			mu.Unlock()
			good.Record(m)
			return nil
		}
		mu.Lock()
		aLog = append(aLog, fmt.Sprintf("%s#%d", m.Payload, m.Delivery.Attempt))
		calls := 0
		for _, c := range aLog {
			if strings.HasPrefix(c, "a1#") {
				calls++
			}
		}
		if m.ID == a1.ID && calls == 2 {
			atSecond, secondAt = handled, time.Now()
		}
		mu.Unlock()
		if m.ID != a1.ID {
			good.Record(m)
			return nil
		}
		if calls == 1 {
			select {
			case firstCall <- struct{}{}:
			default:
			}
			select {
			case <-published:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if calls <= failures {
			if calls == 1 {
				mu.Lock()
				failedAt = time.Now()
				mu.Unlock()
			}
			return fmt.Errorf("key A: failure %d of %d", calls, failures)
		}
		good.Record(m)
		return nil
	}
	mw := newMiddleware(t, retry.WithMaxAttempts(failures+1), retry.WithConstantBackoff(backoff))
	e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, message.Chain(h, mw))

	e.Publish(pub, topic, a1)
	select {
	case <-firstCall:
	case <-time.After(e.Timeout()):
		t.Fatalf("key A's message not handled within %v", e.Timeout())
	}
	var msgs []*message.Message
	var ids []string
	for i := range others {
		m := &message.Message{ID: message.NewID(), Key: "k" + strconv.Itoa(i%50), Payload: []byte("other " + strconv.Itoa(i))}
		msgs = append(msgs, m)
		ids = append(ids, m.ID)
	}
	e.Publish(pub, topic, msgs...)
	e.Publish(pub, topic, laterA...)
	close(published)

	good.WaitAll(e, "the other keys' messages", ids)
	all := []string{a1.ID}
	for _, m := range laterA {
		all = append(all, m.ID)
	}
	good.WaitAll(e, "key A's messages", all)

	mu.Lock()
	defer mu.Unlock()
	t.Logf("after key A's first failure: the other keys' %d messages were all handled in %v, A's second attempt started after %v",
		others, othersDoneAt.Sub(failedAt).Round(time.Millisecond), secondAt.Sub(failedAt).Round(time.Millisecond))
	if noKeyOrder {
		// Features.NoKeyOrder (Kafka share groups): the waiting record is
		// released to the broker after the backoff and comes back in no
		// particular order among the others, which the broker hands out
		// a few at a time; what holds is that the others flowed while it
		// waited (a sleep in the handler lets none through at
		// concurrency 1). There is no per-key order to check.
		if atSecond <= 0 {
			t.Errorf("key A's second attempt started after %d other keys' messages were handled, want some: the retry backoff held the only worker", atSecond)
		}
		return
	}
	if atSecond != others {
		t.Errorf("key A's second attempt started after %d of the %d other keys' messages were handled, want all of them: "+
			"the retry backoff held the only worker", atSecond, others)
	}
	want := []string{"a1#1", "a1#2", "a1#3", "a1#4", "a2#1", "a3#1"}
	if strings.Join(aLog, " ") != strings.Join(want, " ") {
		t.Errorf("key A's handler calls (payload#attempt) = %v, want %v: its retried message first, attempt by attempt, then the later ones in order", aLog, want)
	}
}
