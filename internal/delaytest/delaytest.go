// Package delaytest is the test suite of the retry middleware's delayed
// tiers (retry.WithDelayedRetry, retry.Policy.Subscribe), run by each
// adapter's tests against its real broker:
//
//   - "tiers hand nothing out early and end in the DLT with the history":
//     a message failing every attempt passes its in-process attempts,
//     both tiers and lands in the DLT; every tier delivery starts at or
//     after its due header (no wall-clock bound on the test), carries
//     Delivery.Tier and the total Delivery.Attempt, and the DLT record
//     names the topic, the group, the total attempts, the last tier and
//     (where the broker has them) the original partition and offset;
//   - "the topic is not blocked while a message waits": a later message
//     of the same key, and other keys, are handled before the failed
//     message's first tier attempt;
//   - "a restart while a message waits in a tier loses nothing": the
//     subscription (and, with Harness.Restart, the broker) is restarted
//     while the message waits in its tier; it is handled afterwards, not
//     before its due time.
//
// mutants_test.go proves the suite can fail: on inmem with a tier that
// hands messages out before they are due, and with a publisher that
// loses the tier copies, both subtests fail.
package delaytest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// Harness is what the suite needs of an adapter.
type Harness struct {
	// NewPublisher returns a publisher, closed by the suite.
	NewPublisher func(t testing.TB) message.Publisher
	// NewSubscriber returns a subscriber of group, closed by the suite.
	NewSubscriber func(t testing.TB, group string) message.Subscriber
	// Topic returns a fresh topic name.
	Topic func(t testing.TB) string
	// Prepare, if set, makes topic ready to keep messages for groups
	// before anything is published (AMQP: declare the queues).
	Prepare func(t testing.TB, topic string, groups ...string)
	// Restart, if set, restarts the broker.
	Restart func(t testing.TB)
	// Positions: deliveries have a partition and offset (not AMQP).
	Positions bool
	// TierTopic: a tier delivery's Delivery.Topic is the tier's topic
	// (Kafka, inmem); otherwise it is the topic itself (AMQP).
	TierTopic bool
	// RestartDelay is the tier delay of the restart test (default 1 s).
	RestartDelay time.Duration
	// Wait bounds each wait of the suite (default 60 s).
	Wait time.Duration
}

func (h *Harness) wait() time.Duration {
	if h.Wait > 0 {
		return h.Wait
	}
	return time.Minute
}

// call is one handler call the suite saw.
type call struct {
	id      string
	d       message.Delivery
	headers map[string]string
	at      time.Time
}

type recorder struct {
	mu    sync.Mutex
	calls []call
	ch    chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1)} }

func (r *recorder) add(msg *message.Message) {
	c := call{id: msg.ID, d: msg.Delivery, headers: map[string]string{}, at: time.Now()}
	for k, v := range msg.Headers {
		c.headers[k] = v
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// waitFor waits until cond holds over the calls seen.
func (r *recorder) waitFor(t testing.TB, d time.Duration, what string, cond func([]call) bool) []call {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		cs := r.snapshot()
		if cond(cs) {
			return cs
		}
		select {
		case <-r.ch:
		case <-timer.C:
			t.Fatalf("timed out after %v waiting for %s; calls seen: %s", d, what, describe(cs))
		}
	}
}

func describe(cs []call) string {
	s := ""
	for _, c := range cs {
		s += fmt.Sprintf("\n  %s topic=%s tier=%d attempt=%d due=%s", c.id, c.d.Topic, c.d.Tier, c.d.Attempt, c.headers[delay.HeaderDue])
	}
	return s
}

// subscription runs p.Subscribe until stop.
func subscribe(t testing.TB, p *retry.Policy, sub message.Subscriber, topic string, h message.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- p.Subscribe(message.WithReady(ctx, func() { close(ready) }), sub, topic, h) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Policy.Subscribe(%q) returned before it was ready: %v", topic, err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatalf("Policy.Subscribe(%q) not ready after a minute", topic)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Policy.Subscribe(%q) returned %v after cancel, want nil", topic, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// plain runs sub.Subscribe until the test ends.
func plain(t testing.TB, sub message.Subscriber, topic string, h message.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- sub.Subscribe(message.WithReady(ctx, func() { close(ready) }), topic, h) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Subscribe(%q) returned before it was ready: %v", topic, err)
	}
	t.Cleanup(func() { cancel(); <-done })
}

var errDown = errors.New("delaytest: downstream is down")

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("tiers hand nothing out early and end in the DLT with the history", func(t *testing.T) { testFlow(t, h) })
	t.Run("a restart while a message waits in a tier loses nothing", func(t *testing.T) { testRestart(t, h) })
}

func testFlow(t *testing.T, h Harness) {
	topic := h.Topic(t)
	dlt := topic + retry.DefaultDeadLetterSuffix
	const group = "g"
	if h.Prepare != nil {
		h.Prepare(t, topic, group)
		h.Prepare(t, dlt, "dlt")
	}
	pub := h.NewPublisher(t)
	t.Cleanup(func() { pub.Close() })
	p, err := retry.NewPolicy(
		retry.WithMaxAttempts(2),
		retry.WithConstantBackoff(10*time.Millisecond),
		retry.WithDelayedRetry(pub, 200*time.Millisecond, 400*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	handle := func(_ context.Context, msg *message.Message) error {
		rec.add(msg)
		if msg.ID == "bad" {
			return errDown
		}
		return nil
	}
	sub := h.NewSubscriber(t, group)
	t.Cleanup(func() { sub.Close() })
	subscribe(t, p, sub, topic, message.Chain(handle, p.Middleware()))
	dltRec := newRecorder()
	dltSub := h.NewSubscriber(t, "dlt")
	t.Cleanup(func() { dltSub.Close() })
	plain(t, dltSub, dlt, func(_ context.Context, msg *message.Message) error { dltRec.add(msg); return nil })

	msgs := []*message.Message{{ID: "bad", Key: "k", Payload: []byte("x")}, {ID: "k-after", Key: "k"}}
	for i := range 10 {
		msgs = append(msgs, &message.Message{ID: fmt.Sprintf("o-%d", i), Key: fmt.Sprintf("o%d", i)})
	}
	ctx := context.Background()
	for _, m := range msgs {
		if err := pub.Publish(ctx, topic, m); err != nil {
			t.Fatalf("publish %s: %v", m.ID, err)
		}
	}

	dl := dltRec.waitFor(t, h.wait(), "the dead-letter copy of bad", func(cs []call) bool { return len(cs) > 0 })
	calls := rec.waitFor(t, h.wait(), "every message handled", func(cs []call) bool {
		n := 0
		for _, c := range cs {
			if c.id != "bad" {
				n++
			}
		}
		return n >= len(msgs)-1
	})

	// bad: attempts 1 and 2 on the topic, 3 from tier 1, 4 from tier 2.
	var bad []call
	firstTier, after := -1, -1
	for i, c := range calls {
		switch {
		case c.id == "bad":
			bad = append(bad, c)
			if c.d.Tier == 1 && firstTier < 0 {
				firstTier = i
			}
		case c.id == "k-after" && after < 0:
			after = i
		}
	}
	if len(bad) != 4 {
		t.Fatalf("bad was handled %d times, want 4 (2 in process, one per tier):%s", len(bad), describe(bad))
	}
	tiers := p.TierTopics(topic)
	for i, c := range bad {
		wantTier := max(i-1, 0)
		// The in-process attempts' Delivery.Attempt is the subscriber's
		// business; a tier delivery counts every earlier call.
		if c.d.Tier != wantTier || (wantTier > 0 && c.d.Attempt != i+1) {
			t.Errorf("call %d of bad: Delivery.Tier=%d Attempt=%d, want Tier=%d Attempt=%d", i+1, c.d.Tier, c.d.Attempt, wantTier, i+1)
		}
		wantTopic := topic
		if wantTier > 0 && h.TierTopic {
			wantTopic = tiers[wantTier-1]
		}
		if c.d.Topic != wantTopic {
			t.Errorf("call %d of bad: Delivery.Topic=%q, want %q", i+1, c.d.Topic, wantTopic)
		}
		if wantTier == 0 {
			continue
		}
		due, ok := delay.Due(c.headers)
		if !ok {
			t.Errorf("call %d of bad (tier %d) has no valid due header: %q", i+1, wantTier, c.headers[delay.HeaderDue])
			continue
		}
		if c.at.Before(due) {
			t.Errorf("call %d of bad (tier %d) started %v before its due time %s", i+1, wantTier, due.Sub(c.at), c.headers[delay.HeaderDue])
		}
		if got := c.headers[delay.HeaderTier]; got != strconv.Itoa(wantTier) {
			t.Errorf("call %d of bad: %s=%q, want %d", i+1, delay.HeaderTier, got, wantTier)
		}
	}
	if after < 0 || firstTier < 0 || after > firstTier {
		t.Errorf("k-after (same key, published after bad) was handled at call %d, after bad's first tier attempt at call %d: the topic was blocked while bad waited", after, firstTier)
	}

	// The DLT record: the topic's, with the whole history.
	d := dl[0]
	if d.id != "bad" {
		t.Fatalf("dead-letter copy has ID %q, want bad", d.id)
	}
	info, err := retry.ParseDeadLetter(&message.Message{Headers: d.headers})
	if err != nil {
		t.Fatalf("ParseDeadLetter: %v (headers %v)", err, d.headers)
	}
	if info.Topic != topic || info.Group != group || info.Attempts != 4 {
		t.Errorf("dead letter: topic=%q group=%q attempts=%d, want %q %q 4", info.Topic, info.Group, info.Attempts, topic, group)
	}
	if d.d.Tier != 0 || d.d.Attempt > 2 {
		t.Errorf("the DLT consumer got Delivery.Tier=%d Attempt=%d, want 0 and 1 (or 2 if redelivered): the copy's tier history is not its own", d.d.Tier, d.d.Attempt)
	}
	if got := d.headers[delay.HeaderTier]; got != "2" {
		t.Errorf("dead letter: %s=%q, want 2 (the last tier)", delay.HeaderTier, got)
	}
	if got := d.headers[delay.HeaderAttempts]; got != "3" {
		t.Errorf("dead letter: %s=%q, want 3 (failed calls before the last tier)", delay.HeaderAttempts, got)
	}
	if info.FirstFailure.IsZero() || info.LastFailure.Before(info.FirstFailure) {
		t.Errorf("dead letter: first failure %v, last failure %v", info.FirstFailure, info.LastFailure)
	}
	if info.LastFailure.Sub(info.FirstFailure) < 600*time.Millisecond {
		t.Errorf("dead letter: first failure %v and last failure %v are less than the two tiers' 600ms apart: the history was lost", info.FirstFailure, info.LastFailure)
	}
	if h.Positions {
		if info.Partition != bad[0].d.Partition || info.Offset != bad[0].d.Offset {
			t.Errorf("dead letter: original partition/offset %d/%d, want the topic's %d/%d", info.Partition, info.Offset, bad[0].d.Partition, bad[0].d.Offset)
		}
	}
}

// notifyPub signals each successful publish to a tier topic.
type notifyPub struct {
	message.Publisher
	tier string
	ok   chan struct{}
}

func (p *notifyPub) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(ctx, topic, msgs...)
	if err == nil && topic == p.tier {
		select {
		case p.ok <- struct{}{}:
		default:
		}
	}
	return err
}

func testRestart(t *testing.T, h Harness) {
	topic := h.Topic(t)
	const group = "g"
	if h.Prepare != nil {
		h.Prepare(t, topic, group)
	}
	d := h.RestartDelay
	if d <= 0 {
		d = time.Second
	}
	base := h.NewPublisher(t)
	t.Cleanup(func() { base.Close() })
	probe, err := retry.NewPolicy(retry.WithDelayedRetry(base, d))
	if err != nil {
		t.Fatal(err)
	}
	pub := &notifyPub{Publisher: base, tier: probe.TierTopics(topic)[0], ok: make(chan struct{}, 1)}
	p, err := retry.NewPolicy(retry.WithMaxAttempts(1), retry.WithDelayedRetry(pub, d))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	handle := func(_ context.Context, msg *message.Message) error {
		rec.add(msg)
		if msg.Delivery.Tier == 0 {
			return errDown
		}
		return nil
	}
	chain := message.Chain(handle, p.Middleware())
	sub := h.NewSubscriber(t, group)
	stop := subscribe(t, p, sub, topic, chain)
	if err := base.Publish(context.Background(), topic, &message.Message{ID: "w", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pub.ok:
	case <-time.After(h.wait()):
		t.Fatalf("the message never reached its tier; calls: %s", describe(rec.snapshot()))
	}
	stop()
	sub.Close()
	if h.Restart != nil {
		h.Restart(t)
	}
	sub2 := h.NewSubscriber(t, group)
	t.Cleanup(func() { sub2.Close() })
	subscribe(t, p, sub2, topic, chain)
	calls := rec.waitFor(t, h.wait(), "w handled from its tier after the restart", func(cs []call) bool {
		for _, c := range cs {
			if c.d.Tier == 1 {
				return true
			}
		}
		return false
	})
	for _, c := range calls {
		if c.d.Tier != 1 {
			continue
		}
		due, ok := delay.Due(c.headers)
		if !ok {
			t.Fatalf("tier delivery without a due header: %v", c.headers)
		}
		if c.at.Before(due) {
			t.Errorf("w handled %v before its due time", due.Sub(c.at))
		}
		// 2: one failed call before the tier; 3 where the adapter flags
		// a record fetched (and held) before the restart as redelivered.
		if c.d.Attempt != 2 && c.d.Attempt != 3 {
			t.Errorf("w from tier 1: Delivery.Attempt=%d, want 2 (or 3 with the redelivered flag)", c.d.Attempt)
		}
	}
}
