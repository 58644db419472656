package amqp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

var fastReconnect = amqp.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond)

// states records state changes and lets a test wait for one.
type states struct {
	mu   sync.Mutex
	seen []amqp.StateChange
	ch   chan struct{}
}

func newStates() *states { return &states{ch: make(chan struct{}, 1024)} }

func (s *states) record(sc amqp.StateChange) {
	s.mu.Lock()
	s.seen = append(s.seen, sc)
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *states) count(st amqp.State) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sc := range s.seen {
		if sc.State == st {
			n++
		}
	}
	return n
}

func (s *states) waitCount(t testing.TB, st amqp.State, n int) {
	t.Helper()
	deadline := time.After(wait)
	for s.count(st) < n {
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("saw %d %v state changes, want %d", s.count(st), st, n)
		}
	}
}

func TestReconnectResumesConsumingAndPublishing(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	pst, sst := newStates(), newStates()
	p := newPub(t, purl, fastReconnect, amqp.WithOnStateChange(pst.record))
	s := newSub(t, purl, fastReconnect, amqp.WithGroup("g"), amqp.WithOnStateChange(sst.record))
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := p.Publish(ctx, topic, &message.Message{ID: fmt.Sprint(i)}); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	publish(0, 10)
	c.waitN(t, 10)

	px.Cut()
	sst.waitCount(t, amqp.StateDisconnected, 1)
	// Publish right after the cut: the call waits for the reconnection.
	publish(10, 20)
	pst.waitCount(t, amqp.StateConnected, 2)
	sst.waitCount(t, amqp.StateConnected, 2)
	// Every message arrives; one handled just before the cut may arrive
	// twice (its ack was lost with the connection), so wait for the IDs,
	// not for a count.
	want := make([]string, 20)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	c.waitIDs(t, want)
}

func TestPublishDuringOutageWaitsBoundedByContext(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	pst := newStates()
	p := newPub(t, purl, fastReconnect, amqp.WithOnStateChange(pst.record))
	if err := p.Declare(context.Background(), topic, "g"); err != nil {
		t.Fatal(err)
	}
	px.Down()
	pst.waitCount(t, amqp.StateDisconnected, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := p.Publish(ctx, topic, &message.Message{})
	cancel()
	if err != context.DeadlineExceeded {
		t.Fatalf("Publish during an outage = %v, want context.DeadlineExceeded unwrapped", err)
	}
	pst.waitCount(t, amqp.StateReconnecting, 1)
	px.Up()
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Publish(ctx, topic, &message.Message{}); err != nil {
		t.Fatalf("Publish after the outage: %v", err)
	}
}

// TestInFlightPublishesSurviveCuts publishes from several goroutines while
// connections are cut: every Publish that returned nil must be delivered.
func TestInFlightPublishesSurviveCuts(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	p := newPub(t, purl, fastReconnect, amqp.WithPublishChannels(2))
	s := newSub(t, url, amqp.WithGroup("g"), amqp.WithConcurrency(4)) // direct: only publishing is cut
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	var confirmed sync.Map
	var nConfirmed, nFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; ; b++ {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]*message.Message, 20)
				for i := range batch {
					batch[i] = &message.Message{ID: fmt.Sprintf("%d-%d-%d", g, b, i), Key: fmt.Sprint(g)}
				}
				err := p.Publish(ctx, topic, batch...)
				var pe *message.PublishError
				failed := map[int]bool{}
				if errors.As(err, &pe) {
					for _, f := range pe.Failed {
						failed[f.Index] = true
					}
				} else if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				for i, m := range batch {
					if failed[i] {
						nFailed.Add(1)
						continue
					}
					confirmed.Store(m.ID, true)
					nConfirmed.Add(1)
				}
			}
		}()
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(wait)
		for nConfirmed.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d confirmed, want %d", nConfirmed.Load(), n)
			}
			time.Sleep(time.Millisecond) // polling a counter with a deadline
		}
	}
	for cut := 1; cut <= 3; cut++ {
		waitFor(int64(cut) * 500)
		px.Cut()
	}
	waitFor(2000)
	close(stop)
	wg.Wait()
	var ids []string
	confirmed.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	got := c.waitIDs(t, ids)
	if nFailed.Load() > 0 {
		t.Errorf("%d messages reported failed; connection cuts should be retried transparently", nFailed.Load())
	}
	t.Logf("%d confirmed, %d deliveries (duplicates allowed: at-least-once)", len(ids), len(got))
}

// TestAckOfDeadChannelDeliveryIsNotSentOnNewChannel: a handler that
// finishes after its channel died must not ack on the new channel (that
// would ack another message or close the channel); the broker redelivers
// the message, flagged redelivered.
func TestAckOfDeadChannelDeliveryIsNotSentOnNewChannel(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	sst := newStates()
	s := newSub(t, purl, fastReconnect, amqp.WithGroup("g"), amqp.WithConcurrency(2), amqp.WithOnStateChange(sst.record))
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	type seen struct {
		id          string
		attempt     int
		redelivered bool
	}
	got := make(chan seen, 100)
	var first atomic.Bool
	run(t, s, topic, func(ctx context.Context, m *message.Message) error {
		got <- seen{m.ID, m.Delivery.Attempt, m.Delivery.Redelivered}
		if m.ID == "slow" && first.CompareAndSwap(false, true) {
			<-release
		}
		return nil
	})
	p := newPub(t, url)
	if err := p.Publish(ctx, topic, &message.Message{ID: "slow"}); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g.id != "slow" || g.attempt != 1 {
		t.Fatalf("first delivery %+v", g)
	}
	px.Cut()
	sst.waitCount(t, amqp.StateConnected, 2)
	// The redelivery runs after the first attempt is released (same-key
	// serialisation does not apply: no key); wait for it.
	var re seen
	select {
	case re = <-got:
	case <-time.After(wait):
		t.Fatal("no redelivery after the connection cut")
	}
	close(release)
	if re.id != "slow" || !re.redelivered || re.attempt != 2 {
		t.Fatalf("redelivery %+v, want slow, redelivered, attempt 2", re)
	}
	// The channel still works: a later message arrives and is acked.
	if err := p.Publish(ctx, topic, &message.Message{ID: "after"}); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g.id != "after" {
			t.Fatalf("got %+v, want after", g)
		}
	case <-time.After(wait):
		t.Fatal("no delivery after the late ack")
	}
	if n := sst.count(amqp.StateDisconnected); n != 1 {
		t.Errorf("%d disconnections, want 1 (a wrong ack would close the channel)", n)
	}
}

func TestCredentialsNeverInErrorsOrLogs(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	bad := strings.Replace(purl, "guest:guest@", "guest:hunter2secret@", 1)
	if bad == purl {
		t.Skip("FERRY_AMQP_URL does not use guest:guest; cannot build a wrong-password URL")
	}
	_, err := amqp.NewPublisher(bad)
	if err == nil {
		t.Fatal("NewPublisher with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("error leaks the password: %v", err)
	}
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	st := newStates()
	p := newPub(t, purl, fastReconnect, amqp.WithLogger(logger), amqp.WithOnStateChange(st.record))
	px.Cut()
	st.waitCount(t, amqp.StateConnected, 2)
	p.Close()
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	if !strings.Contains(logs, "disconnected") || strings.Contains(logs, ":guest@") {
		t.Errorf("logs should report the disconnection without the password:\n%s", logs)
	}
	for _, sc := range st.seen {
		if strings.Contains(sc.URL, ":guest@") {
			t.Errorf("state change URL leaks the password: %s", sc.URL)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
