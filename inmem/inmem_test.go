package inmem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func held(b *Broker, topic string) int {
	t, _ := b.topic(topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.parts {
		n += p.n
	}
	return n
}

// newBroker returns a Broker configured by opts, failing t on an error.
func newBroker(t testing.TB, opts ...BrokerOption) *Broker {
	t.Helper()
	b, err := NewBroker(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newPublisher returns a Publisher to b, failing t on an error.
func newPublisher(t testing.TB, b *Broker) *Publisher {
	t.Helper()
	p, err := NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func publishN(t *testing.T, b *Broker, topic string, from, n int) {
	t.Helper()
	pub := newPublisher(t, b)
	for i := from; i < from+n; i++ {
		if err := pub.Publish(context.Background(), topic, &message.Message{Key: fmt.Sprint("k", i%13), Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

type collector struct {
	mu   sync.Mutex
	seen map[string]int
	at   map[int]chan struct{} // closed once len(seen) reaches the key (reached)
}

func (c *collector) handler(ctx context.Context, m *message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[string(m.Payload)]++
	if ch := c.at[len(c.seen)]; ch != nil {
		close(ch)
		delete(c.at, len(c.seen))
	}
	return nil
}

// reached returns a channel closed once n distinct messages were handled.
func (c *collector) reached(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if len(c.seen) >= n {
		close(ch)
		return ch
	}
	if c.at == nil {
		c.at = map[int]chan struct{}{}
	}
	if old := c.at[n]; old != nil {
		return old
	}
	c.at[n] = ch
	return ch
}

// waitClosed waits for ch, failing t after a generous deadline.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitSettled waits until group settled everything published to topic.
func waitSettled(t *testing.T, b *Broker, topic, group string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.WaitSettled(ctx, topic, group); err != nil {
		t.Fatal(err)
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func run(t *testing.T, s *Subscriber, topic string, h message.Handler) (cancel func() error) {
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Subscribe(ctx, topic, h) }()
	return func() error { stop(); return <-errc }
}

func TestSettledMessagesAreDroppedByDefault(t *testing.T) {
	b := newBroker(t, WithPartitions(2))
	defer b.Close()
	s, _ := NewSubscriber(b)
	c := &collector{seen: map[string]int{}}
	stop := run(t, s, "t", c.handler)
	publishN(t, b, "t", 0, 3000)
	waitSettled(t, b, "t", DefaultGroup)
	if n := c.count(); n != 3000 {
		t.Fatalf("%d handled, want 3000", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Trimming runs every 256 settlements per partition: at most that many
	// settled messages per partition may still be held.
	if n := held(b, "t"); n > 2*256 {
		t.Fatalf("%d settled messages still held", n)
	}
}

func TestRetentionKeepsHistoryForLateGroups(t *testing.T) {
	b := newBroker(t, WithPartitions(1), WithRetention(500, 0))
	defer b.Close()
	s, _ := NewSubscriber(b, WithGroup("early"))
	c := &collector{seen: map[string]int{}}
	stop := run(t, s, "t", c.handler)
	publishN(t, b, "t", 0, 2000)
	waitSettled(t, b, "t", "early")
	if n := c.count(); n != 2000 {
		t.Fatalf("%d handled, want 2000", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := held(b, "t"); n < 500 || n > 500+256 {
		t.Fatalf("held %d, want the 500 retained (+ up to 256 not yet trimmed)", n)
	}
	late, _ := NewSubscriber(b, WithGroup("late"))
	lc := &collector{seen: map[string]int{}}
	stopLate := run(t, late, "t", lc.handler)
	waitSettled(t, b, "t", "late")
	lc.mu.Lock()
	newest := lc.seen["1999"]
	lc.mu.Unlock()
	if newest != 1 {
		t.Fatalf("the late group read the newest message %d times, want 1", newest)
	}
	if err := stopLate(); err != nil {
		t.Fatal(err)
	}
	if n := lc.count(); n < 500 || n > 500+256 {
		t.Fatalf("late group read %d messages, want the retained 500 (+ up to 256 not yet trimmed)", n)
	}
}

func TestUnsettledMessagesAreKept(t *testing.T) {
	b := newBroker(t, WithPartitions(1))
	defer b.Close()
	fail := errors.New("not yet")
	s, _ := NewSubscriber(b, WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
	var mu sync.Mutex
	attempts := 0
	retried := make(chan struct{})
	stop := run(t, s, "t", func(ctx context.Context, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Payload) == "0" {
			if attempts++; attempts == 4 {
				close(retried)
			}
			return fail
		}
		return nil
	})
	publishN(t, b, "t", 0, 1000)
	waitClosed(t, retried, "4 attempts of the failing message")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := held(b, "t"); n != 1000 {
		t.Fatalf("held %d: the unsettled first message must keep everything after it", n)
	}
}

func TestMemberJoiningMidStreamLosesNothing(t *testing.T) {
	b := newBroker(t, WithPartitions(8))
	defer b.Close()
	c := &collector{seen: map[string]int{}}
	slow := func(ctx context.Context, m *message.Message) error {
		time.Sleep(50 * time.Microsecond)
		return c.handler(ctx, m)
	}
	s1, _ := NewSubscriber(b, WithGroup("g"), WithConcurrency(4))
	s2, _ := NewSubscriber(b, WithGroup("g"), WithConcurrency(4))
	stop1 := run(t, s1, "t", slow)
	publishN(t, b, "t", 0, 2000)
	waitClosed(t, c.reached(201), "some handled")
	stop2 := run(t, s2, "t", slow)
	publishN(t, b, "t", 2000, 2000)
	waitClosed(t, c.reached(2501), "second member leaves after some work")
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, b, "t", "g")
	if n := c.count(); n != 4000 {
		t.Fatalf("%d handled, want 4000", n)
	}
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliveryAfterResumeIsFlagged(t *testing.T) {
	b := newBroker(t, WithPartitions(1))
	defer b.Close()
	publishN(t, b, "t", 0, 1)
	s, _ := NewSubscriber(b, WithDrainTimeout(time.Millisecond))
	started := make(chan struct{})
	stop := run(t, s, "t", func(ctx context.Context, m *message.Message) error {
		close(started)
		<-ctx.Done() // never finishes in time: not settled
		return ctx.Err()
	})
	<-started
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := make(chan message.Delivery, 1)
	stop = run(t, s, "t", func(ctx context.Context, m *message.Message) error {
		got <- m.Delivery
		return nil
	})
	d := <-got
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !d.Redelivered || d.Attempt != 2 || d.Offset != 0 || d.Topic != "t" || d.Group != DefaultGroup {
		t.Fatalf("redelivery metadata %+v", d)
	}
}

func TestBrokerCloseStopsSubscribers(t *testing.T) {
	b := newBroker(t)
	s, _ := NewSubscriber(b)
	errc := make(chan error, 1)
	go func() {
		errc <- s.Subscribe(context.Background(), "t", func(context.Context, *message.Message) error { return nil })
	}()
	b.Close()
	if err := <-errc; !errors.Is(err, message.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if err := newPublisher(t, b).Publish(context.Background(), "t", &message.Message{}); !errors.Is(err, message.ErrClosed) {
		t.Fatalf("publish after broker close: %v", err)
	}
}

// TestTypedNilOptionsAreSkipped: an option interface holding a nil
// function is skipped like a nil interface, never called.
func TestTypedNilOptionsAreSkipped(t *testing.T) {
	var bo BrokerOption = brokerOpt(nil)
	var so SubscriberOption = subOpt(nil)
	b := newBroker(t, nil, bo)
	defer b.Close()
	if _, err := NewSubscriber(b, nil, so); err != nil {
		t.Fatal(err)
	}
}

func TestWithLoggerLogsHandlerErrors(t *testing.T) {
	b := newBroker(t, WithPartitions(1))
	defer b.Close()
	var buf syncBuffer
	s, err := NewSubscriber(b, WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))), WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	stop := run(t, s, "t", func(ctx context.Context, m *message.Message) error {
		if m.Delivery.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		close(done)
		return nil
	})
	publishN(t, b, "t", 0, 1)
	<-done
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, `level=DEBUG msg="ferry: handler failed" system=inmem topic=t`) || !strings.Contains(out, "first attempt fails") || !strings.Contains(out, "attempt=1") {
		t.Fatalf("log %q lacks the failure", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
