package inmem_test

// Tests of what happens to a partition's messages while the partition
// moves between the members of a group. They use the public API only. The
// sequence tests run in a synctest bubble: synctest.Wait returns once every
// other goroutine (members' fetch loops, dispatcher workers, handlers) is
// blocked, which is how a test knows that a member has reacted to a join or
// a leave without sleeping, and the drain timeout passes on the bubble's
// fake clock.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// Keys and the partition FNV-1a puts them on (inmem's partitioner):
// "b" is partition 1 of 2 (and of 4), "d" partition 3 of 4, "f" partition
// 5 of 6, "a" partition 0 of 2. Each test checks Delivery.Partition, so a
// changed partitioner fails loudly instead of testing something else.

// handled is one handler call.
type handled struct {
	member  string
	payload string
	part    int32
	attempt int
	ok      bool // the handler returned nil
}

// journal records handler calls of every member of a test.
type journal struct {
	mu    sync.Mutex
	calls []handled
}

// handler returns member's handler: before recording, it runs hook (if
// not nil), whose error it returns.
func (j *journal) handler(member string, hook func(ctx context.Context, m *message.Message) error) message.Handler {
	return func(ctx context.Context, m *message.Message) error {
		var err error
		if hook != nil {
			err = hook(ctx, m)
		}
		j.mu.Lock()
		j.calls = append(j.calls, handled{member, string(m.Payload), m.Delivery.Partition, m.Delivery.Attempt, err == nil})
		j.mu.Unlock()
		return err
	}
}

// succeeded returns "member:payload" for each successful call, in order.
func (j *journal) succeeded() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for _, c := range j.calls {
		if c.ok {
			out = append(out, c.member+":"+c.payload)
		}
	}
	return out
}

// partitions returns the partitions the recorded calls came from.
func (j *journal) partitions() map[int32]bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	ps := map[int32]bool{}
	for _, c := range j.calls {
		ps[c.part] = true
	}
	return ps
}

// member is one Subscribe call running in the background.
type member struct {
	stop func()
	errc chan error
}

func join(t *testing.T, b *inmem.Broker, topic string, h message.Handler, opts ...inmem.SubscriberOption) *member {
	t.Helper()
	s, err := inmem.NewSubscriber(b, append([]inmem.SubscriberOption{inmem.WithGroup("g")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{stop: cancel, errc: make(chan error, 1)}
	go func() { m.errc <- s.Subscribe(ctx, topic, h) }()
	return m
}

// leave cancels the member's Subscribe call and waits for it to return.
func (m *member) leave(t *testing.T) {
	t.Helper()
	m.stop()
	if err := <-m.errc; err != nil {
		t.Errorf("Subscribe returned %v", err)
	}
}

// newBroker returns a Broker configured by opts, failing t on an error.
func newBroker(t testing.TB, opts ...inmem.BrokerOption) *inmem.Broker {
	t.Helper()
	b, err := inmem.NewBroker(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newPublisher returns a Publisher to b, failing t on an error.
func newPublisher(t testing.TB, b *inmem.Broker) *inmem.Publisher {
	t.Helper()
	p, err := inmem.NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func publishKey(t *testing.T, b *inmem.Broker, topic, key string, from, to int) {
	t.Helper()
	pub := newPublisher(t, b)
	for i := from; i < to; i++ {
		if err := pub.Publish(context.Background(), topic, &message.Message{Key: key, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
}

func want(member string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, member+":"+strconv.Itoa(i))
	}
	return out
}

func checkSucceeded(t *testing.T, j *journal, wantCalls []string) {
	t.Helper()
	if got := j.succeeded(); strings.Join(got, " ") != strings.Join(wantCalls, " ") {
		t.Errorf("successful handler calls\n got  %v\n want %v", got, wantCalls)
	}
}

// blockFirst returns a hook that blocks the first attempt of payload "0"
// until release is closed, after closing started.
func blockFirst(started, release chan struct{}) func(context.Context, *message.Message) error {
	return func(ctx context.Context, m *message.Message) error {
		if string(m.Payload) == "0" && m.Delivery.Attempt == 1 {
			close(started)
			<-release
		}
		return nil
	}
}

// The reported scenario: A holds ten messages of one key and is slow on the
// first; B joins (the key's partition is to move to B) and leaves again
// before A has finished the first. A keeps the partition and must go on
// with the second message, not with the eleventh.
func TestRevocationCancelledByLeaveSkipsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(2))
		defer b.Close()
		publishKey(t, b, "t", "b", 0, 10) // partition 1: B's while B is there
		j := &journal{}
		started, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", blockFirst(started, release)))
		defer a.leave(t)
		<-started

		bm := join(t, b, "t", j.handler("B", nil))
		synctest.Wait() // B has joined; A has given up partition 1's queued messages and waits for "0"
		bm.leave(t)
		synctest.Wait() // A is wanted as partition 1's owner again
		releaseOnce()
		synctest.Wait()
		publishKey(t, b, "t", "b", 10, 11)
		synctest.Wait()

		checkSucceeded(t, j, want("A", 0, 11))
		if ps := j.partitions(); len(ps) != 1 || !ps[1] {
			t.Errorf("key %q came from partitions %v, want partition 1 only: the test's key choice is stale", "b", ps)
		}
	})
}

// Two joins: B's makes A give up partition 3 of 4, C's makes A its owner
// again (3 mod 3 = 0) while A still waits for its slow handler.
func TestRevocationCancelledByJoinSkipsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(4))
		defer b.Close()
		publishKey(t, b, "t", "d", 0, 10) // partition 3
		j := &journal{}
		started, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", blockFirst(started, release)))
		defer a.leave(t)
		<-started

		bm := join(t, b, "t", j.handler("B", nil))
		defer bm.leave(t)
		synctest.Wait()
		cm := join(t, b, "t", j.handler("C", nil))
		defer cm.leave(t)
		synctest.Wait()
		releaseOnce()
		synctest.Wait()
		publishKey(t, b, "t", "d", 10, 11)
		synctest.Wait()

		checkSucceeded(t, j, want("A", 0, 11))
		if ps := j.partitions(); len(ps) != 1 || !ps[3] {
			t.Errorf("key %q came from partitions %v, want partition 3 only", "d", ps)
		}
	})
}

// A leave starts the move, a join calls it off: with members A, B, C,
// partition 3 of 4 is A's (3 mod 3); B's leave moves it to C (3 mod 2), D's
// join gives it back to A (3 mod 3) while A waits for its slow handler.
func TestRevocationByLeaveCancelledByJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(4))
		defer b.Close()
		j := &journal{}
		started, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", blockFirst(started, release)))
		defer a.leave(t)
		synctest.Wait()
		bm := join(t, b, "t", j.handler("B", nil))
		synctest.Wait()
		cm := join(t, b, "t", j.handler("C", nil))
		defer cm.leave(t)
		synctest.Wait() // members A, B, C; partition 3 is A's
		publishKey(t, b, "t", "d", 0, 10)
		<-started

		bm.leave(t)
		synctest.Wait() // partition 3 is to move to C; A drains it
		dm := join(t, b, "t", j.handler("D", nil))
		defer dm.leave(t)
		synctest.Wait() // A is partition 3's owner again
		releaseOnce()
		synctest.Wait()
		publishKey(t, b, "t", "d", 10, 11)
		synctest.Wait()

		checkSucceeded(t, j, want("A", 0, 11))
		if ps := j.partitions(); len(ps) != 1 || !ps[3] {
			t.Errorf("key %q came from partitions %v, want partition 3 only", "d", ps)
		}
	})
}

// Two joins that both move partition 5 of 6: to B (5 mod 2), then to C
// (5 mod 3). It goes to C once A's handler returned, from A's commit point.
func TestRevocationRetargetedByJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(6))
		defer b.Close()
		publishKey(t, b, "t", "f", 0, 10) // partition 5
		j := &journal{}
		started, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", blockFirst(started, release)))
		defer a.leave(t)
		<-started

		bm := join(t, b, "t", j.handler("B", nil))
		defer bm.leave(t)
		synctest.Wait()
		cm := join(t, b, "t", j.handler("C", nil))
		defer cm.leave(t)
		synctest.Wait()
		releaseOnce()
		synctest.Wait()
		publishKey(t, b, "t", "f", 10, 11)
		synctest.Wait()

		checkSucceeded(t, j, append(want("A", 0, 1), want("C", 1, 11)...))
		if ps := j.partitions(); len(ps) != 1 || !ps[5] {
			t.Errorf("key %q came from partitions %v, want partition 5 only", "f", ps)
		}
	})
}

// A handler that outlives the drain timeout of a revocation: its context is
// cancelled, and the partition stays with A until the handler returns, so
// the key never runs on two members at once. The new owner then starts at
// A's commit point, redelivering the unsettled first message.
func TestRevocationDrainTimeoutCancelsAndWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(2))
		defer b.Close()
		publishKey(t, b, "t", "b", 0, 10)
		j := &journal{}
		started, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", func(ctx context.Context, m *message.Message) error {
			if string(m.Payload) != "0" || m.Delivery.Attempt != 1 {
				return nil
			}
			close(started)
			<-ctx.Done()
			close(cancelled)
			<-release // still running after its context ended
			return ctx.Err()
		}), inmem.WithDrainTimeout(time.Second))
		defer a.leave(t)
		<-started

		joined := time.Now()
		bm := join(t, b, "t", j.handler("B", func(ctx context.Context, m *message.Message) error {
			if m.Delivery.Partition == 1 && string(m.Payload) == "0" && !m.Delivery.Redelivered {
				return errors.New("first message not flagged as redelivered")
			}
			return nil
		}))
		defer bm.leave(t)
		select {
		case <-cancelled:
			if d := time.Since(joined); d < time.Second {
				t.Errorf("handler context cancelled %v after the revocation, before the 1s drain timeout", d)
			}
		case <-time.After(time.Hour): // fake time: passes at once if nothing else can happen
			t.Error("handler context not cancelled after the drain timeout of the revocation")
		}
		synctest.Wait()
		checkSucceeded(t, j, nil) // nothing of partition 1 ran on B while A's handler runs
		releaseOnce()
		synctest.Wait()
		checkSucceeded(t, j, want("B", 0, 10))
	})
}

// The drain timeout passes, the handler's context is cancelled, and then
// the move is called off while the handler still runs: A takes the
// partition back once the handler returned, and as that handler failed,
// the first message comes again (flagged) before the others.
func TestRevocationCancelledAfterDrainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(2))
		defer b.Close()
		publishKey(t, b, "t", "b", 0, 10)
		j := &journal{}
		started, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", func(ctx context.Context, m *message.Message) error {
			if string(m.Payload) != "0" {
				return nil
			}
			if m.Delivery.Attempt == 1 {
				close(started)
				<-ctx.Done()
				close(cancelled)
				<-release
				return ctx.Err()
			}
			if !m.Delivery.Redelivered {
				return errors.New("first message not flagged as redelivered")
			}
			return nil
		}), inmem.WithDrainTimeout(time.Second))
		defer a.leave(t)
		<-started

		bm := join(t, b, "t", j.handler("B", nil))
		select {
		case <-cancelled:
		case <-time.After(time.Hour):
			t.Error("handler context not cancelled after the drain timeout of the revocation")
		}
		bm.leave(t)
		synctest.Wait()
		releaseOnce()
		synctest.Wait()
		publishKey(t, b, "t", "b", 10, 11)
		synctest.Wait()

		checkSucceeded(t, j, want("A", 0, 11))
	})
}

// While one partition waits for its slow handler to give it up, the member
// goes on fetching and handling its other partitions.
func TestRevocationDoesNotStallOtherPartitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(2))
		defer b.Close()
		publishKey(t, b, "t", "b", 0, 1) // partition 1, moving to B
		j := &journal{}
		started, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", blockFirst(started, release)), inmem.WithConcurrency(2))
		defer a.leave(t)
		<-started
		bm := join(t, b, "t", j.handler("B", nil))
		defer bm.leave(t)
		synctest.Wait()
		publishKey(t, b, "t", "a", 100, 103) // partition 0, staying with A
		synctest.Wait()
		checkSucceeded(t, j, want("A", 100, 103))
		releaseOnce()
		synctest.Wait()
		checkSucceeded(t, j, append(want("A", 100, 103), "A:0"))
	})
}

// A member that leaves while one of its partitions waits for a slow
// handler: Subscribe drains as on any stop, and the partition goes to the
// remaining member only after the handler returned.
func TestLeaveDuringRevocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, inmem.WithPartitions(2))
		defer b.Close()
		publishKey(t, b, "t", "b", 0, 5)
		j := &journal{}
		started, release := make(chan struct{}), make(chan struct{})
		releaseOnce := sync.OnceFunc(func() { close(release) })
		defer releaseOnce()
		a := join(t, b, "t", j.handler("A", blockFirst(started, release)), inmem.WithDrainTimeout(time.Second))
		<-started
		bm := join(t, b, "t", j.handler("B", nil))
		defer bm.leave(t)
		synctest.Wait()
		a.stop()
		time.Sleep(time.Minute) // fake time: far past A's drain timeout, its handler still running
		synctest.Wait()
		checkSucceeded(t, j, nil)
		releaseOnce()
		if err := <-a.errc; err != nil {
			t.Errorf("A's Subscribe returned %v", err)
		}
		synctest.Wait()
		checkSucceeded(t, j, append(want("A", 0, 1), want("B", 1, 5)...))
	})
}

// churn is the shared state of TestChurnKeepsKeyOrder's handlers.
type churn struct {
	mu       sync.Mutex
	active   map[string]int // handlers running per key, over all members
	next     map[string]int // per key, the sequence number to succeed first next
	firsts   int            // messages handled successfully at least once
	problems []string
	failed   chan struct{} // closed at the first problem
	target   int
	reached  chan struct{} // closed once firsts >= target
	calls    int
	cancels  int // handlers that saw their context cancelled
}

func (c *churn) problem(format string, args ...any) {
	if len(c.problems) == 0 {
		close(c.failed)
	}
	if len(c.problems) < 20 {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// waitFirsts returns a channel closed once n messages were handled.
func (c *churn) waitFirsts(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.target, c.reached = n, make(chan struct{})
	if c.firsts >= n {
		close(c.reached)
	}
	return c.reached
}

func (c *churn) handler(member string) message.Handler {
	return func(ctx context.Context, m *message.Message) error {
		key := m.Key
		seq, err := strconv.Atoi(string(m.Payload))
		if err != nil {
			return err // not ours; fails the test by never succeeding
		}
		c.mu.Lock()
		if c.active[key] > 0 {
			c.problem("%s: %s/%d started while another handler of its key runs", member, key, seq)
		}
		c.active[key]++
		c.calls++
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.active[key]--
			c.mu.Unlock()
		}()

		switch r := rand.IntN(100); {
		case r < 3 && m.Delivery.Attempt == 1:
			return errors.New("transient failure")
		case r < 6:
			// Slow: outlives the 2ms drain timeout unless cancelled.
			select {
			case <-ctx.Done():
				c.mu.Lock()
				c.cancels++
				c.mu.Unlock()
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}

		c.mu.Lock()
		defer c.mu.Unlock()
		switch n := c.next[key]; {
		case seq > n:
			c.problem("%s: %s/%d handled before %s/%d", member, key, seq, key, n)
		case seq == n:
			c.next[key]++
			c.firsts++
			if c.reached != nil && c.firsts >= c.target {
				close(c.reached)
				c.reached = nil
			}
		}
		return nil
	}
}

// Three members join and leave as the work progresses; each message must be
// handled, and per key the first successful handlings must be in publish
// order and never overlap.
func TestChurnKeepsKeyOrder(t *testing.T) {
	const (
		keys    = 16
		perKey  = 100
		total   = keys * perKey
		step    = 50 // a membership change every step messages handled
		members = 3
	)
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	b := newBroker(t)
	defer b.Close()
	c := &churn{active: map[string]int{}, next: map[string]int{}, failed: make(chan struct{})}
	pub := newPublisher(t, b)
	published := 0
	publish := func(n int) {
		for ; n > 0 && published < total; n-- {
			key, seq := published%keys, published/keys
			if err := pub.Publish(context.Background(), "t", &message.Message{Key: fmt.Sprint("k", key), Payload: []byte(strconv.Itoa(seq))}); err != nil {
				t.Fatal(err)
			}
			published++
		}
	}
	running := make([]*member, members)
	start := func(i int) {
		running[i] = join(t, b, "t", c.handler(fmt.Sprint("m", i)), inmem.WithConcurrency(4), inmem.WithMaxPending(64),
			inmem.WithDrainTimeout(2*time.Millisecond), inmem.WithRedeliveryBackoff(time.Millisecond, 2*time.Millisecond))
	}
	defer func() {
		for _, m := range running {
			if m != nil {
				m.leave(t)
			}
		}
	}()
	wait := func(n int) {
		select {
		case <-c.waitFirsts(n):
			return
		case <-c.failed:
		case <-time.After(20 * time.Second):
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.problems {
			t.Error(p)
		}
		t.Fatalf("seed %d: stopped at %d of %d messages handled (waiting for %d); next per key %v", seed, c.firsts, total, n, c.next)
	}

	start(0)
	publish(400)
	changes := 0
	for n := step; n < total; n += step {
		wait(n)
		i := rng.IntN(members)
		up := 0
		for _, m := range running {
			if m != nil {
				up++
			}
		}
		switch {
		case running[i] == nil:
			start(i)
		case up > 1:
			running[i].leave(t)
			running[i] = nil
		}
		changes++
		publish(step)
	}
	publish(total)
	wait(total)

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Error(p)
	}
	for k := 0; k < keys; k++ {
		if n := c.next[fmt.Sprint("k", k)]; n != perKey {
			t.Errorf("k%d: %d of %d handled", k, n, perKey)
		}
	}
	t.Logf("seed %d: %d membership changes, %d handler calls for %d messages, %d handlers cancelled by a drain timeout", seed, changes, c.calls, total, c.cancels)
}
