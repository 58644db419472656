package messagetest

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// Env is one test's view of a Harness, for writing suites that run on every
// adapter (as packages retry/retrytest and dedupe/dedupetest do, and as Run
// does itself): fresh topic and group names, publishers and subscribers
// built by the harness and closed when the test ends, Subscribe calls run
// in the background and watched, and waits bounded by Features.Timeout
// that fail with what was expected and what was seen. Every method fails
// the test (t.Fatal) instead of returning an error. An Env belongs to the
// test it was made for; use it from that test's goroutine, except
// Eventually's condition, which may read state that handlers write.
type Env struct {
	*suite
	t    *testing.T
	name string // from the test's name, for topics and groups

	mu   sync.Mutex
	subs []*subscription
}

// NewEnv checks h (NewPublisher and NewSubscriber are required) and returns
// the Env of test t. Make one in each test, so that names, cleanups and
// waits belong to it.
func NewEnv(t *testing.T, h Harness) *Env {
	t.Helper()
	return newSuite(t, h).env(t)
}

func (s *suite) env(t *testing.T) *Env {
	t.Helper()
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return &Env{suite: s, t: t, name: sanitize(name, 50)}
}

// sanitize keeps [a-zA-Z0-9._-], turning anything else into '-', and cuts
// the result to max bytes.
func sanitize(s string, max int) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			b[i] = '-'
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}

func randSuffix() string {
	return strconv.FormatUint(rand.Uint64()>>24, 36)
}

// Timeout is the bound of every wait: Features.Timeout, or DefaultTimeout
// when that is 0.
func (e *Env) Timeout() time.Duration { return e.timeout }

// Topic returns a fresh topic name: Harness.NewTopic's, or
// ferry-<test>-<random> from letters, digits, '.', '_' and '-'.
func (e *Env) Topic() string {
	if e.h.NewTopic != nil {
		return e.h.NewTopic(e.t)
	}
	return "ferry-" + e.name + "-" + randSuffix()
}

// Group returns a fresh consumer group name that contains role.
func (e *Env) Group(role string) string {
	return sanitize("ferry-"+e.name[:min(len(e.name), 30)]+"-"+role+"-"+randSuffix(), 100)
}

// Prepare calls Harness.Prepare when it is set. Call it for each topic
// before publishing to it, with every group that will consume it
// (dead-letter topics included): on AMQP a group's queues only receive
// what is published after they exist.
func (e *Env) Prepare(topic string, groups ...string) {
	e.t.Helper()
	if e.h.Prepare != nil {
		e.h.Prepare(e.t, topic, groups...)
	}
}

// Context returns a context that ends after Timeout or when the test ends.
func (e *Env) Context() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// Publisher returns a new publisher from Harness.NewPublisher, closed when
// the test ends.
func (e *Env) Publisher() message.Publisher {
	e.t.Helper()
	p, err := e.h.NewPublisher(e.t)
	if err != nil {
		e.t.Fatalf("Harness.NewPublisher: %v", err)
	}
	if p == nil {
		e.t.Fatal("Harness.NewPublisher returned nil")
	}
	e.t.Cleanup(func() { _ = p.Close() })
	return p
}

// Publish publishes msgs with a context bounded by Timeout and fails the
// test on error.
func (e *Env) Publish(p message.Publisher, topic string, msgs ...*message.Message) {
	e.t.Helper()
	if err := p.Publish(e.Context(), topic, msgs...); err != nil {
		e.t.Fatalf("Publish(%q, %d messages): %v", topic, len(msgs), err)
	}
}

// Config returns the subscriber configuration the suites use: group and
// concurrency as given, a redelivery backoff of 1 ms to 20 ms, and a drain
// timeout of Timeout, so that redelivery is fast and shutdown never cancels
// a handler early.
func (e *Env) Config(group string, concurrency int) SubscriberConfig {
	return SubscriberConfig{
		Group:          group,
		Concurrency:    concurrency,
		InitialBackoff: suiteInitialBackoff,
		MaxBackoff:     suiteMaxBackoff,
		DrainTimeout:   e.timeout,
	}
}

// Subscriber returns a new subscriber from Harness.NewSubscriber, closed
// when the test ends.
func (e *Env) Subscriber(cfg SubscriberConfig) message.Subscriber {
	e.t.Helper()
	s, err := e.h.NewSubscriber(e.t, cfg)
	if err != nil {
		e.t.Fatalf("Harness.NewSubscriber(%+v): %v", cfg, err)
	}
	if s == nil {
		e.t.Fatal("Harness.NewSubscriber returned nil")
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// Subscribe runs sub.Subscribe(ctx, topic, h) in a goroutine until the test
// ends; then it cancels ctx and waits for Subscribe to return (failing the
// test if it does not within Timeout). A Subscribe that returns before
// that, with any result, fails the test's next Eventually at once.
func (e *Env) Subscribe(sub message.Subscriber, topic string, h message.Handler) {
	e.subscribe(sub, topic, h)
}

// subscription is a Subscribe call running in its own goroutine.
type subscription struct {
	topic  string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed

	mu       sync.Mutex
	stopping bool // the test ended it on purpose
}

func (s *subscription) setStopping() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
}

func (s *subscription) endedEarly() bool {
	select {
	case <-s.done:
	default:
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.stopping
}

// subscribe is Subscribe, returning the subscription so that a test can
// end it (stop, wait).
func (e *Env) subscribe(sub message.Subscriber, topic string, h message.Handler) *subscription {
	return e.subscribeCtx(context.Background(), sub, topic, h)
}

// subscribeCtx is subscribe with Subscribe's context derived from parent
// (which carries values, such as message.WithReady's, and never ends).
func (e *Env) subscribeCtx(parent context.Context, sub message.Subscriber, topic string, h message.Handler) *subscription {
	ctx, cancel := context.WithCancel(parent)
	s := &subscription{topic: topic, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = sub.Subscribe(ctx, topic, h)
	}()
	e.mu.Lock()
	e.subs = append(e.subs, s)
	e.mu.Unlock()
	e.t.Cleanup(func() {
		s.setStopping()
		cancel()
		select {
		case <-s.done:
		case <-time.After(e.timeout):
			e.t.Errorf("Subscribe(%q) did not return within %v of its context being cancelled", topic, e.timeout)
		}
	})
	return s
}

// wait waits for the subscription to return and returns its error, failing
// the test if it does not return within the timeout. The subscription must
// have been ended on purpose (cancel or Close) first.
func (e *Env) wait(s *subscription, why string) error {
	e.t.Helper()
	s.setStopping()
	select {
	case <-s.done:
		return s.err
	case <-time.After(e.timeout):
		e.t.Fatalf("Subscribe(%q) did not return within %v of %s", s.topic, e.timeout, why)
		return nil
	}
}

// stop cancels the subscription's context and checks that Subscribe returns
// nil.
func (e *Env) stop(s *subscription) {
	e.t.Helper()
	s.setStopping()
	s.cancel()
	if err := e.wait(s, "its context being cancelled"); err != nil {
		e.t.Fatalf("Subscribe(%q) returned %v after its context was cancelled, want nil", s.topic, err)
	}
}

// Eventually polls cond every 2 ms until it reports done. It fails the
// test when Timeout passes ("timed out ... waiting for <what>; got
// <status>", status being cond's last report of what it saw) or at once
// when a Subscribe started by Subscribe returns on its own.
func (e *Env) Eventually(what string, cond func() (done bool, status string)) {
	e.t.Helper()
	deadline := time.Now().Add(e.timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		e.mu.Lock()
		subs := slices.Clone(e.subs)
		e.mu.Unlock()
		for _, s := range subs {
			if s.endedEarly() {
				e.t.Fatalf("waiting for %s: Subscribe(%q) returned early with error %v; so far %s", what, s.topic, s.err, status)
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s; got %s", e.timeout, what, status)
		}
		<-tick.C
	}
}

// isErr checks errors.Is(err, target) and reports a helpful failure.
func (e *Env) isErr(call string, err, target error) {
	e.t.Helper()
	if !errors.Is(err, target) {
		e.t.Errorf("%s returned %v, want an error wrapping %v", call, err, target)
	}
}
