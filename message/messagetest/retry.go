package messagetest

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
	"github.com/ferrymsg/ferry/retry"
)

// RunRetry runs the end-to-end tests of the retry middleware (package retry)
// against the adapter that h describes, each as a subtest named for the
// behaviour it checks:
//
//   - an always-failing message is dead-lettered after exactly N attempts
//     with its headers while later messages keep flowing: the message is
//     handled exactly 3 times (WithMaxAttempts(3)), lands once on
//     <topic>.DLT with the same ID, key, payload and headers plus ferry's
//     dead-letter headers (topic, group, partition and offset where the
//     broker has them, error, attempts, failure times), and the later
//     messages of its key and of other keys are all handled;
//   - a permanent error goes straight to the dead-letter topic with
//     Spring's headers: one handler call; the Spring profile's binary
//     headers survive the broker and decode back to the delivery's
//     partition, offset and time;
//   - a failing dead-letter publish redelivers the message instead of
//     losing it: the first 2 dead-letter publishes fail, the message is
//     redelivered by the subscriber (not settled) and is dead-lettered on
//     the third, with no extra handler calls;
//   - replay brings dead-lettered messages back to their topic: a Replay
//     whose publisher fails leaves every message on the dead-letter topic;
//     a second Replay republishes all of them, without dead-letter headers,
//     and the now-healthy handler gets each one.
//
// Run calls it after the core tests; call it alone to run just these.
// Prepare (when set) is called for each topic and dead-letter topic with the groups that
// consume it.
func RunRetry(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	t.Run("always-failing message is dead-lettered after exactly N attempts while later messages keep flowing", s.testRetryExhausted)
	t.Run("permanent error goes straight to the dead-letter topic with Spring headers", s.testRetryPermanentSpring)
	t.Run("failing dead-letter publish redelivers instead of losing the message", s.testRetryDeadLetterPublishFails)
	t.Run("replay brings dead-lettered messages back to their topic", s.testRetryReplay)
}

// retryCounter counts handler calls per message ID and keeps a copy of the
// last delivery of each.
type retryCounter struct {
	mu    sync.Mutex
	calls map[string]int
	last  map[string]*message.Message
}

func newRetryCounter() *retryCounter {
	return &retryCounter{calls: map[string]int{}, last: map[string]*message.Message{}}
}

func (c *retryCounter) record(m *message.Message) {
	c.mu.Lock()
	c.calls[m.ID]++
	c.last[m.ID] = copyMessage(m)
	c.mu.Unlock()
}

func (c *retryCounter) get(id string) (int, *message.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id], c.last[id]
}

func (e *env) retryMiddleware(opts ...retry.Option) message.Middleware {
	e.t.Helper()
	mw, err := retry.New(opts...)
	if err != nil {
		e.t.Fatalf("retry.New: %v", err)
	}
	return mw
}

// waitDeadLetter waits until the collector has a copy of id and returns the
// first one.
func (e *env) waitDeadLetter(c *collector, dlt, id string) *message.Message {
	e.t.Helper()
	e.eventually(fmt.Sprintf("message %s on %s", id, dlt), func() (bool, string) {
		return len(c.get(id)) > 0, "nothing yet"
	})
	return c.get(id)[0].msg
}

// checkPosition checks the dead-letter copy's partition and offset against
// the delivery the handler saw.
func (e *env) checkPosition(info retry.DeadLetterInfo, orig *message.Message) {
	e.t.Helper()
	wantP, wantO := orig.Delivery.Partition, orig.Delivery.Offset
	if wantP < 0 {
		wantP = -1
	}
	if wantO < 0 {
		wantO = -1
	}
	if info.Partition != wantP || info.Offset != wantO {
		e.t.Errorf("dead-letter position = partition %d offset %d, want %d/%d (the delivery's)", info.Partition, info.Offset, wantP, wantO)
	}
}

func (s *suite) testRetryExhausted(t *testing.T) {
	e := s.env(t)
	topic, group, dltGroup := e.topic(), e.group("work"), e.group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.prepare(topic, group)
	e.prepare(dlt, dltGroup)
	pub := e.publisher()

	const attempts = 3
	counter, good := newRetryCounter(), newCollector()
	h := func(_ context.Context, m *message.Message) error {
		if m.Headers["kind"] == "poison" {
			counter.record(m)
			return errors.New("poison: always fails")
		}
		good.record(0, m)
		return nil
	}
	mw := e.retryMiddleware(retry.WithMaxAttempts(attempts), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	e.subscribe(e.subscriber(e.config(group, 2)), topic, message.Chain(h, mw))
	dead := newCollector()
	e.subscribe(e.subscriber(e.config(dltGroup, 1)), dlt, dead.handler(0))

	poison := &message.Message{ID: message.NewID(), Key: "k1", Payload: []byte("bad"), Headers: map[string]string{"kind": "poison", "app": "x"}}
	msgs := []*message.Message{poison}
	var ids []string
	for i := range 10 {
		m := &message.Message{ID: message.NewID(), Key: "k" + strconv.Itoa(1+i%2), Payload: []byte("good " + strconv.Itoa(i))}
		msgs = append(msgs, m)
		ids = append(ids, m.ID)
	}
	e.publish(pub, topic, msgs...)

	good.waitAll(e, "messages after the poison one", ids)
	dl := e.waitDeadLetter(dead, dlt, poison.ID)
	// The good messages of key k1 come after the poison one, so it was
	// settled before they ran: its call count is final.
	calls, orig := counter.get(poison.ID)
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
	e.checkPosition(info, orig)
	if info.FirstFailure.IsZero() || info.LastFailure.Before(info.FirstFailure) {
		t.Errorf("failure times first %v last %v", info.FirstFailure, info.LastFailure)
	}
}

func (s *suite) testRetryPermanentSpring(t *testing.T) {
	e := s.env(t)
	topic, group, dltGroup := e.topic(), e.group("work"), e.group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.prepare(topic, group)
	e.prepare(dlt, dltGroup)
	pub := e.publisher()

	counter := newRetryCounter()
	h := func(_ context.Context, m *message.Message) error {
		counter.record(m)
		return retry.Permanent(errors.New("invalid order"))
	}
	mw := e.retryMiddleware(retry.WithMaxAttempts(5), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub), retry.SpringHeaders())
	e.subscribe(e.subscriber(e.config(group, 1)), topic, message.Chain(h, mw))
	dead := newCollector()
	e.subscribe(e.subscriber(e.config(dltGroup, 1)), dlt, dead.handler(0))

	sent := time.UnixMilli(time.Now().UnixMilli())
	m := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("p"), Time: sent}
	e.publish(pub, topic, m)
	dl := e.waitDeadLetter(dead, dlt, m.ID)

	calls, orig := counter.get(m.ID)
	if calls != 1 {
		t.Errorf("permanent error: handled %d times, want 1", calls)
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
	e.checkPosition(info, orig)
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

var errInjected = errors.New("messagetest: injected publish failure")

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

func (s *suite) testRetryDeadLetterPublishFails(t *testing.T) {
	e := s.env(t)
	topic, group, dltGroup := e.topic(), e.group("work"), e.group("dlt")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.prepare(topic, group)
	e.prepare(dlt, dltGroup)
	pub := e.publisher()
	const failures, attempts = 2, 2
	fpub := &failingPublisher{Publisher: pub, topic: dlt, n: failures}

	counter, good := newRetryCounter(), newCollector()
	h := func(_ context.Context, m *message.Message) error {
		if m.Headers["kind"] == "poison" {
			counter.record(m)
			return errors.New("always fails")
		}
		good.record(0, m)
		return nil
	}
	var (
		evMu   sync.Mutex
		events []retry.DeadLetterEvent
	)
	mw := e.retryMiddleware(retry.WithMaxAttempts(attempts), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(fpub),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) {
			evMu.Lock()
			events = append(events, ev)
			evMu.Unlock()
		}))
	e.subscribe(e.subscriber(e.config(group, 1)), topic, message.Chain(h, mw))
	dead := newCollector()
	e.subscribe(e.subscriber(e.config(dltGroup, 1)), dlt, dead.handler(0))

	poison := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("bad"), Headers: map[string]string{"kind": "poison"}}
	after := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("good")}
	e.publish(pub, topic, poison, after)

	good.waitAll(e, "the message after the poison one", []string{after.ID})
	dl := e.waitDeadLetter(dead, dlt, poison.ID)
	if calls, _ := counter.get(poison.ID); calls != attempts {
		t.Errorf("poison message handled %d times, want %d (redeliveries after a failed dead-letter publish only retry the publish)", calls, attempts)
	}
	if dl.Headers[retry.HeaderAttempts] != strconv.Itoa(attempts) {
		t.Errorf("attempts header %q, want %d", dl.Headers[retry.HeaderAttempts], attempts)
	}
	evMu.Lock()
	defer evMu.Unlock()
	if len(events) < failures+1 {
		t.Fatalf("%d dead-letter publishes, want at least %d", len(events), failures+1)
	}
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

func (s *suite) testRetryReplay(t *testing.T) {
	e := s.env(t)
	topic, group, replayGroup := e.topic(), e.group("work"), e.group("replay")
	dlt := topic + retry.DefaultDeadLetterSuffix
	e.prepare(topic, group)
	e.prepare(dlt, replayGroup)
	pub := e.publisher()

	var broken atomic.Bool
	broken.Store(true)
	healed := newCollector()
	h := func(_ context.Context, m *message.Message) error {
		if broken.Load() {
			return errors.New("downstream unavailable")
		}
		healed.record(0, m)
		return nil
	}
	var deadLettered atomic.Int64
	mw := e.retryMiddleware(retry.WithMaxAttempts(1), retry.WithDeadLetter(pub),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) {
			if ev.PublishErr == nil {
				deadLettered.Add(1)
			}
		}))
	e.subscribe(e.subscriber(e.config(group, 1)), topic, message.Chain(h, mw))

	const n = 3
	var msgs []*message.Message
	var ids []string
	for i := range n {
		m := &message.Message{ID: message.NewID(), Key: "k" + strconv.Itoa(i), Payload: []byte("p" + strconv.Itoa(i)), Headers: map[string]string{"app": "x"}}
		msgs = append(msgs, m)
		ids = append(ids, m.ID)
	}
	e.publish(pub, topic, msgs...)
	e.eventually("3 messages dead-lettered", func() (bool, string) {
		d := deadLettered.Load()
		return d == n, fmt.Sprintf("%d", d)
	})
	broken.Store(false)

	// A replay whose republish fails leaves the message on the DLT.
	fpub := &failingPublisher{Publisher: pub, n: 1 << 30}
	stats, err := retry.Replay(e.ctx(), e.subscriber(e.config(replayGroup, 1)), fpub, dlt, retry.WithIdleTimeout(e.timeout))
	if !errors.Is(err, errInjected) {
		t.Fatalf("Replay with a failing publisher: %v, want the injected error", err)
	}
	if stats.Replayed != 0 {
		t.Fatalf("Replay with a failing publisher: stats %+v", stats)
	}

	stats, err = retry.Replay(e.ctx(), e.subscriber(e.config(replayGroup, 1)), pub, dlt, retry.WithLimit(n), retry.WithIdleTimeout(e.timeout))
	if err != nil {
		t.Fatalf("Replay: %v (stats %+v)", err, stats)
	}
	if stats.Replayed != n {
		t.Fatalf("Replay: stats %+v, want %d replayed", stats, n)
	}
	healed.waitAll(e, "replayed messages", ids)
	for i, id := range ids {
		got := healed.get(id)[0].msg
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
