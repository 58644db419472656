package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestMain runs a child process when the test binary is re-executed as
// one (the crash test's consumer, see crash_test.go; the group-order
// test's members, see grouporder_test.go), and otherwise the tests,
// failing the package if any of them leaves a goroutine behind.
func TestMain(m *testing.M) {
	switch role := os.Getenv(childEnv); role {
	case "":
	case orderMemberRole:
		if err := orderMember(); err != nil {
			fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m,
		// database/sql's connection opener ends with DB.Close, but pgx's
		// stdlib driver keeps one background goroutine per process.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		// If the cluster tests started the Kafka cluster, stop it (four
		// JVMs, 1-1.4 GiB resident) rather than leave it running. (Cleanup
		// replaces goleak's os.Exit.)
		goleak.Cleanup(func(code int) {
			if err := testenv.StopKafkaClusterIfStarted(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			os.Exit(code)
		}),
	)
}

// needFaults skips tests that disrupt shared brokers (restarts) unless
// FERRY_FAULTS=1, which `make test-faults` (and so `make test`) sets when
// it runs this package alone.
func needFaults(t *testing.T) {
	t.Helper()
	if os.Getenv("FERRY_FAULTS") != "1" {
		t.Skip("restarts a shared broker: runs with FERRY_FAULTS=1, as `make test-faults` (part of `make test`) sets it when this package runs alone")
	}
}

// name returns a unique broker-safe name (Kafka topic, AMQP exchange, SQL
// table): letters, digits and '_' only.
func name(prefix string) string {
	return fmt.Sprintf("%s_%d_%06d", prefix, time.Now().UnixMilli()%1e9, rand.IntN(1e6))
}

// ledger counts messages through a fault: what Publish acknowledged, what
// it reported as failed, what the handler received.
type ledger struct {
	mu         sync.Mutex
	sent       int
	acked      map[string]bool
	failed     map[string]bool
	received   map[string]int
	deliveries int
	errs       map[string]int // publish error texts (up to 20 distinct)
	changed    chan struct{}
}

// errSamples returns the distinct publish errors seen, with counts.
func (l *ledger) errSamples() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.errs)
}

func newLedger() *ledger {
	return &ledger{acked: map[string]bool{}, failed: map[string]bool{}, received: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (l *ledger) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// published records the outcome of one Publish call of msgs: a nil error
// acknowledges all of them, a *message.PublishError fails the ones it
// lists, any other error fails all of them.
func (l *ledger) published(msgs []*message.Message, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent += len(msgs)
	if err != nil {
		if l.errs == nil {
			l.errs = map[string]int{}
		}
		if _, ok := l.errs[err.Error()]; ok || len(l.errs) < 20 {
			l.errs[err.Error()]++
		}
	}
	failed := map[int]bool{}
	var pe *message.PublishError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		for _, f := range pe.Failed {
			failed[f.Index] = true
		}
	default:
		for i := range msgs {
			failed[i] = true
		}
	}
	for i, m := range msgs {
		if failed[i] {
			l.failed[m.ID] = true
		} else {
			l.acked[m.ID] = true
		}
	}
	l.poke()
}

// handle is a handler that records each delivery.
func (l *ledger) handle(_ context.Context, m *message.Message) error {
	l.record(m.ID)
	return nil
}

func (l *ledger) record(id string) {
	l.mu.Lock()
	l.received[id]++
	l.deliveries++
	l.mu.Unlock()
	l.poke()
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// missing returns the acknowledged IDs not received yet.
func (l *ledger) missing() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.acked {
		if l.received[id] == 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// waitAcked waits until the handler has received every acknowledged
// message, or timeout; it returns what is still missing.
func (l *ledger) waitAcked(timeout time.Duration) []string {
	return l.waitUntil(timeout, func() bool { return len(l.missing()) == 0 })
}

func (l *ledger) waitUntil(timeout time.Duration, cond func() bool) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-l.changed:
		case <-tick.C:
		case <-deadline.C:
			return l.missing()
		}
	}
	return l.missing()
}

// waitAckedAtLeast waits until at least n messages were acknowledged.
func (l *ledger) waitAckedAtLeast(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	l.waitUntil(timeout, func() bool { return l.ackedCount() >= n })
	if got := l.ackedCount(); got < n {
		t.Fatalf("only %d messages acknowledged after %v, want %d", got, timeout, n)
	}
}

// result is one row of RELIABILITY.md.
type result struct {
	Fault      string // short name
	Adapter    string
	Injection  string // how the fault was injected
	Sent       int    // messages handed to Publish
	Acked      int    // Publish returned nil for them
	PubErrors  int    // Publish returned an error for them
	ErrButGot  int    // of those, received anyway (the outcome was unknown)
	Received   int    // distinct messages the handler got
	Lost       int    // acknowledged but never received: must be 0
	Duplicated int    // deliveries beyond the first of a message
	Extra      string // fault-specific figures
	Cmd        string // how to reproduce
}

func (l *ledger) result() result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := result{Sent: l.sent, Acked: len(l.acked), PubErrors: len(l.failed), Received: len(l.received)}
	for id := range l.acked {
		if l.received[id] == 0 {
			r.Lost++
		}
	}
	for id := range l.failed {
		if l.received[id] > 0 {
			r.ErrButGot++
		}
	}
	r.Duplicated = l.deliveries - len(l.received)
	return r
}

// report checks that nothing was lost and writes the summary line to the
// test log and to the file named by FERRY_RELIABILITY_OUT.
func report(t *testing.T, r result, lost []string) {
	t.Helper()
	if r.Cmd == "" {
		r.Cmd = fmt.Sprintf("go test -race -count=1 -run '^%s$' ./reliability/", strings.SplitN(t.Name(), "/", 2)[0])
	}
	line := fmt.Sprintf("RELIABILITY fault=%q adapter=%s injection=%q sent=%d acked=%d publish_errors=%d errored_but_received=%d received=%d lost=%d duplicated=%d extra=%q cmd=%q",
		r.Fault, r.Adapter, r.Injection, r.Sent, r.Acked, r.PubErrors, r.ErrButGot, r.Received, r.Lost, r.Duplicated, r.Extra, r.Cmd)
	t.Log(line)
	if r.Lost != 0 {
		if len(lost) > 10 {
			lost = lost[:10]
		}
		t.Errorf("%s: %d acknowledged messages were never received (first: %v)", r.Fault, r.Lost, lost)
	}
	if out := os.Getenv("FERRY_RELIABILITY_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("summary file: %v", err)
			return
		}
		defer f.Close()
		if _, err := fmt.Fprintln(f, line); err != nil {
			t.Errorf("summary file: %v", err)
		}
	}
}

// publishLoop runs n goroutines that each publish one message per call
// (IDs "<prefix>-<goroutine>-<seq>") until stop is closed, each call
// bounded by perCall. It returns a function that stops them and waits.
func publishLoop(pub message.Publisher, topic, prefix string, n int, perCall time.Duration, l *ledger, key func(i int) string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				m := &message.Message{ID: fmt.Sprintf("%s-%d-%d", prefix, g, i), Payload: []byte("payload")}
				if key != nil {
					m.Key = key(g*1_000_000 + i)
				}
				ctx, cancel := context.WithTimeout(context.Background(), perCall)
				err := pub.Publish(ctx, topic, m)
				cancel()
				l.published([]*message.Message{m}, err)
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// subscription runs Subscribe in the background.
type subscription struct {
	cancel context.CancelFunc
	done   chan error
}

func subscribe(ctx context.Context, s message.Subscriber, topic string, h message.Handler) *subscription {
	ctx, cancel := context.WithCancel(ctx)
	sb := &subscription{cancel: cancel, done: make(chan error, 1)}
	go func() { sb.done <- s.Subscribe(ctx, topic, h) }()
	return sb
}

// stop cancels the Subscribe call and checks that it returned nil in time.
func (sb *subscription) stop(t *testing.T) {
	t.Helper()
	sb.cancel()
	select {
	case err := <-sb.done:
		if err != nil {
			t.Errorf("Subscribe returned %v after cancel, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("Subscribe did not return within 60s of cancel")
	}
}

// running fails the test if Subscribe has returned already.
func (sb *subscription) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-sb.done:
		t.Fatalf("Subscribe returned early: %v", err)
	default:
	}
}
