package messagetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// DefaultTimeout bounds each wait of the suite when Features.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Redelivery backoff and drain timeout the suite asks of subscribers unless a
// test needs otherwise: small, so that redelivery tests run fast.
const (
	suiteInitialBackoff = time.Millisecond
	suiteMaxBackoff     = 20 * time.Millisecond
)

// Run runs the conformance suite against the adapter that h describes, each
// test as a subtest named for the behaviour it checks. The tests run one
// after another (the goroutine-leak test needs a quiet process). Tests that
// need a capability the adapter lacks (see Features) are not run; Run logs
// them. Run ends with the middleware suites on the same adapter: RunRetry
// (as subtest "retry and dead-lettering") and RunDedupe (as "dedupe").
func Run(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	for _, tc := range s.tests() {
		if tc.needs != nil {
			if missing := tc.needs(h.Features); missing != "" {
				// Not run, rather than skipped: the adapter declares it
				// cannot do this, so there is nothing to test.
				t.Logf("not run: %q needs Features.%s", tc.name, missing)
				continue
			}
		}
		t.Run(tc.name, tc.run)
	}
	t.Run("retry and dead-lettering", func(t *testing.T) { RunRetry(t, h) })
	t.Run("dedupe", func(t *testing.T) { RunDedupe(t, h) })
}

// newSuite checks the harness and applies the defaults.
func newSuite(t *testing.T, h Harness) *suite {
	t.Helper()
	if h.NewPublisher == nil || h.NewSubscriber == nil {
		t.Fatal("messagetest: Harness.NewPublisher and Harness.NewSubscriber are required")
	}
	if h.Features.Restart && h.RestartBroker == nil {
		t.Fatal("messagetest: Features.Restart is set but Harness.RestartBroker is nil")
	}
	s := &suite{h: h, timeout: h.Features.Timeout}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	return s
}

type testCase struct {
	name string
	run  func(t *testing.T)
	// needs names the capability the test requires when f lacks it.
	needs func(f Features) (missing string)
}

// tests lists the suite. Keep it in step with the list in doc.go.
func (s *suite) tests() []testCase {
	return []testCase{
		{"round trip keeps ID, key, payload, headers and time", s.testRoundTrip, nil},
		{"publish fills in an empty ID and time", s.testPublishFillsIDAndTime, nil},
		{"batch publish of 1000 messages arrives complete", s.testBatchPublish, nil},
		{"concurrent publishes from 20 goroutines arrive complete without duplicates", s.testConcurrentPublish, nil},
		{"topics are isolated", s.testTopicIsolation, nil},
		{"two groups each receive every message", s.testTwoGroups, nil},
		{"subscribers of one group split the messages without overlap", s.testGroupSplit, nil},
		{"same-key messages are handled in order and never concurrently, up to the concurrency limit", s.testKeyOrder, nil},
		{"members of one group keep per-key order and never overlap a key", s.testGroupKeyOrder, nil},
		{"per-key order holds while members join, leave and crash", s.testGroupKeyOrderChurn, nil},
		{"handler error redelivers with growing attempt before later same-key messages", s.testHandlerError, nil},
		{"handler panic is treated as an error and the subscriber keeps running", s.testHandlerPanic, nil},
		{"resumed subscriber does not get settled messages again", s.testResume, nil},
		{"new group reads from the start", s.testNewGroupReadsHistory, func(f Features) string {
			if !f.NewGroupReadsHistory {
				return "NewGroupReadsHistory"
			}
			return ""
		}},
		{"graceful shutdown lets in-flight handlers finish and settles them", s.testGracefulShutdown, nil},
		{"cancelling an idle subscribe returns nil", s.testCancelIdle, nil},
		{"close is idempotent", s.testCloseIdempotent, nil},
		{"publish and subscribe after close return ErrClosed", s.testUseAfterClose, nil},
		{"close unblocks a running subscribe with ErrClosed", s.testCloseUnblocksSubscribe, nil},
		{"bad input is rejected and publishes nothing", s.testBadInput, nil},
		{"no goroutines are left after close", s.testNoLeaks, nil},
		{"broker restart during publish and consume loses nothing", s.testRestart, func(f Features) string {
			if !f.Restart {
				return "Restart"
			}
			return ""
		}},
	}
}

type suite struct {
	h       Harness
	timeout time.Duration
}

// env is the per-test state: the test, its subscriptions (so that a wait can
// fail as soon as a Subscribe returns early) and a short name for topics and
// groups.
type env struct {
	*suite
	t    *testing.T
	name string

	mu   sync.Mutex
	subs []*subscription
}

func (s *suite) env(t *testing.T) *env {
	t.Helper()
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return &env{suite: s, t: t, name: sanitize(name, 50)}
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

// topic returns a fresh topic name: Harness.NewTopic's, or
// ferry-<test>-<random>.
func (e *env) topic() string {
	if e.h.NewTopic != nil {
		return e.h.NewTopic(e.t)
	}
	return "ferry-" + e.name + "-" + randSuffix()
}

// group returns a fresh consumer group name.
func (e *env) group(role string) string {
	return sanitize("ferry-"+e.name[:min(len(e.name), 30)]+"-"+role+"-"+randSuffix(), 100)
}

// prepare calls Harness.Prepare when it is set.
func (e *env) prepare(topic string, groups ...string) {
	e.t.Helper()
	if e.h.Prepare != nil {
		e.h.Prepare(e.t, topic, groups...)
	}
}

// ctx returns a context that ends after the suite's timeout and with the test.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// publisher returns a new publisher, closed when the test ends.
func (e *env) publisher() message.Publisher {
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

// config is the subscriber configuration the suite uses unless a test needs
// otherwise.
func (e *env) config(group string, concurrency int) SubscriberConfig {
	return SubscriberConfig{
		Group:          group,
		Concurrency:    concurrency,
		InitialBackoff: suiteInitialBackoff,
		MaxBackoff:     suiteMaxBackoff,
		DrainTimeout:   e.timeout,
	}
}

// subscriber returns a new subscriber, closed when the test ends.
func (e *env) subscriber(cfg SubscriberConfig) message.Subscriber {
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

// publish publishes msgs and fails the test on error.
func (e *env) publish(p message.Publisher, topic string, msgs ...*message.Message) {
	e.t.Helper()
	if err := p.Publish(e.ctx(), topic, msgs...); err != nil {
		e.t.Fatalf("Publish(%q, %d messages): %v", topic, len(msgs), err)
	}
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

// subscribe starts sub.Subscribe(ctx, topic, h) in a goroutine. When the test
// ends the subscription is cancelled and waited for.
func (e *env) subscribe(sub message.Subscriber, topic string, h message.Handler) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
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
func (e *env) wait(s *subscription, why string) error {
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
func (e *env) stop(s *subscription) {
	e.t.Helper()
	s.setStopping()
	s.cancel()
	if err := e.wait(s, "its context being cancelled"); err != nil {
		e.t.Fatalf("Subscribe(%q) returned %v after its context was cancelled, want nil", s.topic, err)
	}
}

// eventually polls cond until it reports done, failing the test when the
// timeout passes (with what was expected and status, what was seen) or when
// a subscription of the test returns on its own.
func (e *env) eventually(what string, cond func() (done bool, status string)) {
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

// received is one handler call as a collector saw it.
type received struct {
	msg *message.Message // a copy, Delivery included
	sub int              // which subscriber handled it
}

// collector records handler calls by message ID.
type collector struct {
	mu    sync.Mutex
	byID  map[string][]received
	bySub map[int]int
	calls int
}

func newCollector() *collector {
	return &collector{byID: make(map[string][]received), bySub: make(map[int]int)}
}

// copyMessage copies m deeply, Delivery included, so that it can be kept
// after the handler returns.
func copyMessage(m *message.Message) *message.Message {
	c := *m
	if m.Payload != nil {
		c.Payload = slices.Clone(m.Payload)
	}
	if m.Headers != nil {
		c.Headers = make(map[string]string, len(m.Headers))
		for k, v := range m.Headers {
			c.Headers[k] = v
		}
	}
	return &c
}

func (c *collector) record(sub int, m *message.Message) {
	cp := copyMessage(m)
	c.mu.Lock()
	c.byID[m.ID] = append(c.byID[m.ID], received{msg: cp, sub: sub})
	c.bySub[sub]++
	c.calls++
	c.mu.Unlock()
}

// handler returns a handler that records each message as handled by
// subscriber sub and returns nil.
func (c *collector) handler(sub int) message.Handler {
	return func(_ context.Context, m *message.Message) error {
		c.record(sub, m)
		return nil
	}
}

// get returns the handler calls for id.
func (c *collector) get(id string) []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.byID[id])
}

// count returns the number of handler calls by subscriber sub.
func (c *collector) count(sub int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySub[sub]
}

// missing returns the ids that were not handled yet.
func (c *collector) missing(ids []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range ids {
		if len(c.byID[id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// waitAll waits until every id was handled at least once.
func (c *collector) waitAll(e *env, what string, ids []string) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("%s: all %d messages", what, len(ids)), func() (bool, string) {
		miss := c.missing(ids)
		if len(miss) == 0 {
			return true, ""
		}
		return false, fmt.Sprintf("%d of %d (missing %s)", len(ids)-len(miss), len(ids), abbrev(miss))
	})
}

// checkOnly fails the test for every id that was handled more than once, and
// for any handled message that is not in ids.
func (c *collector) checkOnly(e *env, what string, ids []string) {
	e.t.Helper()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var dups, extra []string
	for id, rs := range c.byID {
		if !want[id] {
			extra = append(extra, id)
		} else if len(rs) > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, len(rs)))
		}
	}
	if len(dups) > 0 {
		e.t.Errorf("%s: %d messages were handled more than once, want each once: %s", what, len(dups), abbrev(dups))
	}
	if len(extra) > 0 {
		e.t.Errorf("%s: %d messages were handled that were not published there: %s", what, len(extra), abbrev(extra))
	}
}

// abbrev prints up to 5 items of a list.
func abbrev(s []string) string {
	slices.Sort(s)
	if len(s) > 5 {
		return fmt.Sprintf("%s and %d more", strings.Join(s[:5], ", "), len(s)-5)
	}
	return strings.Join(s, ", ")
}

// newMessages returns n messages with IDs set, keys from key(i) and payload
// "<prefix>-<i>".
func newMessages(n int, prefix string, key func(i int) string) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = &message.Message{
			ID:      message.NewID(),
			Payload: []byte(prefix + "-" + strconv.Itoa(i)),
		}
		if key != nil {
			msgs[i].Key = key(i)
		}
	}
	return msgs
}

// distinctKeys gives every message its own key.
func distinctKeys(prefix string) func(int) string {
	return func(i int) string { return prefix + "-" + strconv.Itoa(i) }
}

func ids(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// isErr checks errors.Is(err, target) and reports a helpful failure.
func (e *env) isErr(call string, err, target error) {
	e.t.Helper()
	if !errors.Is(err, target) {
		e.t.Errorf("%s returned %v, want an error wrapping %v", call, err, target)
	}
}
