package messagetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// errKilled is what the handler of a killed member returns: a crashed
// process handles nothing and acknowledges nothing.
var errKilled = errors.New("messagetest: this member was killed (a crashed process handles and acknowledges nothing)")

// maxExamples bounds the violations a groupOrder keeps in full; the rest
// are only counted.
const maxExamples = 20

// groupOrder is the bookkeeping of the tests of per-key order across the
// members of a group. All members run in this process, so one mutex orders
// every handler call of every member: it knows which message each call is
// (key and sequence number within the key), which calls of a key are
// running, and which sequence numbers of each key were handled.
//
// A message counts as handled when a handler call of a live member begins.
// The first handling of each message of a key must come in publish order:
// the first handling of #n finds #0 … #n-1 handled already. A call for a
// message that was handled before is a redelivery, allowed (at-least-once)
// and counted. A call that begins while another call of its key is running
// is an overlap. Calls of a killed member are forgotten from the kill on:
// a crashed process's handlers do not run on.
type groupOrder struct {
	mu       sync.Mutex
	where    map[string]keySeq // message ID -> key and sequence number
	warm     map[string]int    // warm-up message ID -> handler calls
	keys     map[string]*keyState
	keyNames []string
	members  []*groupMember

	published   int // messages registered (Publish called or about to be)
	handled     int // messages handled at least once
	calls       int // handler calls of live members for tracked messages
	redelivered int // of which for messages handled before
	steps       []groupStep
	overlaps    violations
	disorder    violations
	unknown     []string
	checked     bool // check ran

	// progress gets a token (non-blocking) whenever a message is handled
	// for the first time.
	progress chan struct{}
}

// groupStep is a step of a test (a member joins, leaves, crashes) with the
// redeliveries seen from its start to the next step's.
type groupStep struct {
	name        string
	handled     int // messages first handled during the step
	redelivered int
}

type keySeq struct {
	key string
	seq int
}

type keyState struct {
	next    int   // lowest sequence number not handled yet
	count   []int // handler calls per sequence number
	running []*groupCall
}

// groupMember is one member (subscriber) of the group under test.
type groupMember struct {
	n       int // 1-based, for messages
	dead    bool
	handled int // handler calls for tracked messages while alive
	warm    int // handler calls for warm-up messages while alive
	active  map[*groupCall]struct{}
}

// groupCall is one running handler call of a tracked message.
type groupCall struct {
	m       *groupMember
	key     string
	seq     int
	ignored bool // its member was killed while it ran
}

// violations counts violations of one kind, keeping the first few and the
// keys affected.
type violations struct {
	n        int
	examples []string
	keys     map[string]int
}

func (v *violations) add(key, what string) {
	v.n++
	if len(v.examples) < maxExamples {
		v.examples = append(v.examples, what)
	}
	if v.keys == nil {
		v.keys = make(map[string]int)
	}
	v.keys[key]++
}

// describe lists up to five examples in the order they happened.
func (v *violations) describe() string {
	ex := v.examples
	if len(ex) > 5 {
		ex = ex[:5]
	}
	s := strings.Join(ex, "; ")
	if v.n > len(ex) {
		s += fmt.Sprintf("; and %d more", v.n-len(ex))
	}
	return s
}

// checkOnFailure makes a test that fails before its own check (a wait that
// timed out) still report the violations seen so far, with examples.
func (g *groupOrder) checkOnFailure(t *testing.T) {
	t.Cleanup(func() {
		g.mu.Lock()
		checked := g.checked
		g.mu.Unlock()
		if t.Failed() && !checked {
			t.Log("violations seen before the failure:")
			g.check(t)
		}
	})
}

func newGroupOrder() *groupOrder {
	return &groupOrder{
		where:    make(map[string]keySeq),
		warm:     make(map[string]int),
		keys:     make(map[string]*keyState),
		progress: make(chan struct{}, 1),
	}
}

// member adds a member to the bookkeeping.
func (g *groupOrder) member() *groupMember {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := &groupMember{n: len(g.members) + 1, active: make(map[*groupCall]struct{})}
	g.members = append(g.members, m)
	return m
}

// add returns perKey further messages for each of keys keys (key-00,
// key-01, ...), interleaved, numbered on from the key's earlier messages,
// and registers them. Publish them in the order returned.
func (g *groupOrder) add(keys, perKey int) []*message.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	msgs := make([]*message.Message, 0, keys*perKey)
	for range perKey {
		for k := range keys {
			key := fmt.Sprintf("key-%02d", k)
			st := g.keys[key]
			if st == nil {
				st = &keyState{}
				g.keys[key] = st
				g.keyNames = append(g.keyNames, key)
			}
			seq := len(st.count)
			st.count = append(st.count, 0)
			m := &message.Message{ID: message.NewID(), Key: key, Payload: fmt.Appendf(nil, "%s #%d", key, seq)}
			g.where[m.ID] = keySeq{key, seq}
			msgs = append(msgs, m)
		}
	}
	g.published += len(msgs)
	return msgs
}

// addWarm returns n warm-up messages, each with its own key, and registers
// them. Warm-up messages are only counted, not checked.
func (g *groupOrder) addWarm(round, n int) []*message.Message {
	msgs := newMessages(n, fmt.Sprintf("warm%d", round), distinctKeys(fmt.Sprintf("warm%d", round)))
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range msgs {
		g.warm[m.ID] = 0
	}
	return msgs
}

// simulatedWork takes 0 to 2 ms at random, so that handlers of different
// keys and members overlap in time.
func simulatedWork() {
	time.Sleep(time.Duration(rand.IntN(2001)) * time.Microsecond)
}

// handler returns member m's handler.
func (g *groupOrder) handler(m *groupMember) message.Handler {
	return func(_ context.Context, msg *message.Message) error {
		c, err := g.begin(m, msg)
		if err != nil || c == nil {
			return err
		}
		simulatedWork()
		return g.end(c)
	}
}

// begin records the start of a handler call. It returns errKilled for a
// killed member and a nil call for messages that are not checked.
func (g *groupOrder) begin(m *groupMember, msg *message.Message) (*groupCall, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.dead {
		return nil, errKilled
	}
	if _, ok := g.warm[msg.ID]; ok {
		g.warm[msg.ID]++
		m.warm++
		return nil, nil
	}
	p, ok := g.where[msg.ID]
	if !ok {
		if len(g.unknown) < maxExamples {
			g.unknown = append(g.unknown, fmt.Sprintf("%s (key %q)", msg.ID, msg.Key))
		}
		return nil, nil
	}
	st := g.keys[p.key]
	m.handled++
	g.calls++
	if len(st.running) > 0 {
		r := st.running[0]
		g.overlaps.add(p.key, fmt.Sprintf("%s #%d began on member %d while #%d ran on member %d", p.key, p.seq, m.n, r.seq, r.m.n))
	}
	var step *groupStep
	if len(g.steps) > 0 {
		step = &g.steps[len(g.steps)-1]
	}
	if st.count[p.seq] > 0 {
		g.redelivered++
		if step != nil {
			step.redelivered++
		}
	} else {
		if step != nil {
			step.handled++
		}
		if p.seq != st.next {
			g.disorder.add(p.key, fmt.Sprintf("%s #%d on member %d before #%d", p.key, p.seq, m.n, st.next))
		}
		g.handled++
		select {
		case g.progress <- struct{}{}:
		default:
		}
	}
	st.count[p.seq]++
	for st.next < len(st.count) && st.count[st.next] > 0 {
		st.next++
	}
	c := &groupCall{m: m, key: p.key, seq: p.seq}
	st.running = append(st.running, c)
	m.active[c] = struct{}{}
	return c, nil
}

// end records the end of a handler call. A call of a member killed while it
// ran returns errKilled: its acknowledgement never reaches the broker.
func (g *groupOrder) end(c *groupCall) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !c.ignored {
		g.forget(c)
	}
	if c.m.dead {
		return errKilled
	}
	return nil
}

// forget removes a call from the running calls of its key and member.
func (g *groupOrder) forget(c *groupCall) {
	st := g.keys[c.key]
	for i, r := range st.running {
		if r == c {
			st.running = append(st.running[:i], st.running[i+1:]...)
			break
		}
	}
	delete(c.m.active, c)
}

// killIfActive marks m dead if one of its handler calls is running, and
// reports whether it did. From then on m's handler records nothing and
// fails at once, and its running calls no longer count as running.
func (g *groupOrder) killIfActive(m *groupMember) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(m.active) == 0 {
		return false
	}
	m.dead = true
	for c := range m.active {
		g.forget(c)
		c.ignored = true
	}
	return true
}

// step starts a new step of the test, for the figures.
func (g *groupOrder) step(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.steps = append(g.steps, groupStep{name: name})
}

// stepFigures describes each step's first handlings and redeliveries.
func (g *groupOrder) stepFiguresLocked() string {
	parts := make([]string, len(g.steps))
	for i, st := range g.steps {
		parts[i] = fmt.Sprintf("%s: %d handled, %d redelivered", st.name, st.handled, st.redelivered)
	}
	return strings.Join(parts, "; ")
}

// memberHandled returns the handler calls of m for tracked messages.
func (g *groupOrder) memberHandled(m *groupMember) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return m.handled
}

// handledCount returns the number of tracked messages handled at least once.
func (g *groupOrder) handledCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.handled
}

// backlog returns the registered messages not handled yet.
func (g *groupOrder) backlog() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.published - g.handled
}

// allHandled reports whether every registered message was handled.
func (g *groupOrder) allHandled() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.handled == g.published
}

// perMember returns the handler calls of each member for tracked messages.
func (g *groupOrder) perMember() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.perMemberLocked()
}

func (g *groupOrder) perMemberLocked() []int {
	out := make([]int, len(g.members))
	for i, m := range g.members {
		out[i] = m.handled
	}
	return out
}

// status sums up what was seen, for waits that time out.
func (g *groupOrder) status() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("%d of %d published messages handled; handler calls per member %v; %d overlaps, %d out of order",
		g.handled, g.published, g.perMemberLocked(), g.overlaps.n, g.disorder.n)
}

// warmUp publishes rounds of 16 messages with keys of their own, each round
// handled before the next, until each of mbs has handled one: then every
// member is running and has a share of the group's work. It returns the
// number of rounds and warm-up messages.
func (g *groupOrder) warmUp(e *Env, pub message.Publisher, topic string, mbs ...*groupMember) (rounds, n int) {
	e.t.Helper()
	deadline := time.Now().Add(e.timeout)
	for round := 0; ; round++ {
		msgs := g.addWarm(round, 16)
		e.Publish(pub, topic, msgs...)
		n += len(msgs)
		e.Eventually(fmt.Sprintf("warm-up round %d: all %d messages", round, len(msgs)), func() (bool, string) {
			g.mu.Lock()
			defer g.mu.Unlock()
			got := 0
			for _, m := range msgs {
				if g.warm[m.ID] > 0 {
					got++
				}
			}
			return got == len(msgs), fmt.Sprintf("%d of %d", got, len(msgs))
		})
		g.mu.Lock()
		all := true
		counts := make([]int, len(mbs))
		for i, m := range mbs {
			counts[i] = m.warm
			all = all && m.warm > 0
		}
		g.mu.Unlock()
		if all {
			return round + 1, n
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("after %d warm-up rounds (%d messages) within %v the members handled %v of them; want every member of the group to get some before the test proper",
				round+1, n, e.timeout, counts)
		}
	}
}

// check fails the test for every overlap, every message handled before an
// earlier one of its key, every message never handled and every message
// that was not published by the test.
func (g *groupOrder) check(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checked = true
	if g.overlaps.n > 0 {
		t.Errorf("%d handler calls began while a call for the same key was still running on a live member (%d of %d keys affected); want never two calls of a key at once, across all members: %s",
			g.overlaps.n, len(g.overlaps.keys), len(g.keys), g.overlaps.describe())
	}
	if g.disorder.n > 0 {
		t.Errorf("%d messages were handled for the first time while an earlier message of their key had never been handled (%d of %d keys affected); want each key's messages first handled in publish order, across all members: %s",
			g.disorder.n, len(g.disorder.keys), len(g.keys), g.disorder.describe())
	}
	var missing violations
	for _, key := range g.keyNames {
		for seq, n := range g.keys[key].count {
			if n == 0 {
				missing.add(key, fmt.Sprintf("%s #%d", key, seq))
			}
		}
	}
	if missing.n > 0 {
		t.Errorf("%d of %d published messages were never handled (%d of %d keys affected); want none lost: %s",
			missing.n, g.published, len(missing.keys), len(g.keys), missing.describe())
	}
	if len(g.unknown) > 0 {
		t.Errorf("%d messages were handled that the test did not publish to this topic: %s", len(g.unknown), abbrev(g.unknown))
	}
}

// testGroupKeyOrder runs three members of one group, each with concurrency
// 8, and publishes 32 keys × 100 messages once every member has a share of
// the work (warm-up). Each key's messages must be first handled in publish
// order and never two at once across all members; every message must be
// handled; and at least two members must have handled some.
func (s *suite) testGroupKeyOrder(t *testing.T) {
	const members, concurrency, keys, perKey = 3, 8, 32, 100
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	g := newGroupOrder()
	g.checkOnFailure(t)
	runs := make([]*subscription, members)
	mbs := make([]*groupMember, members)
	for i := range mbs {
		mbs[i] = g.member()
		runs[i] = e.subscribe(e.Subscriber(e.Config(group, concurrency)), topic, g.handler(mbs[i]))
	}
	rounds, warm := g.warmUp(e, pub, topic, mbs...)

	msgs := g.add(keys, perKey)
	for i := 0; i < len(msgs); i += 400 {
		e.Publish(pub, topic, msgs[i:min(i+400, len(msgs))]...)
	}
	e.Eventually(fmt.Sprintf("%d messages (%d keys × %d) handled by the group's %d members", len(msgs), keys, perKey, members), func() (bool, string) {
		return g.allHandled(), g.status()
	})
	for _, r := range runs {
		e.stop(r)
	}

	g.check(t)
	counts := g.perMember()
	busy := 0
	for _, n := range counts {
		if n > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Errorf("the members handled %v of the %d messages; want at least two members of the group to get some", counts, len(msgs))
	}
	g.mu.Lock()
	t.Logf("%d warm-up rounds (%d messages); then %d messages of %d keys: handler calls per member %v, %d redeliveries, %d overlaps, %d out of order",
		rounds, warm, len(msgs), keys, counts, g.redelivered, g.overlaps.n, g.disorder.n)
	g.mu.Unlock()
}

// feeder publishes batches of keyed messages from its own goroutine while
// fewer than window published messages are unhandled, until stopped.
type feeder struct {
	stopCh   chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu      sync.Mutex
	err     error
	batches int
}

func (e *Env) feed(g *groupOrder, pub message.Publisher, topic string, keys, perKey, window int) *feeder {
	f := &feeder{stopCh: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 4*e.timeout)
	go func() {
		defer close(f.done)
		for {
			for g.backlog() >= window {
				select {
				case <-g.progress:
				case <-f.stopCh:
					return
				}
			}
			select {
			case <-f.stopCh:
				return
			default:
			}
			msgs := g.add(keys, perKey)
			if err := pub.Publish(ctx, topic, msgs...); err != nil {
				f.mu.Lock()
				f.err = fmt.Errorf("Publish(%q, %d messages) in batch %d: %w", topic, len(msgs), f.batches+1, err)
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.batches++
			f.mu.Unlock()
		}
	}()
	e.t.Cleanup(func() {
		f.stopOnce.Do(func() { close(f.stopCh) })
		cancel()
		<-f.done
	})
	return f
}

// failed returns the error that stopped the feeder, if any.
func (f *feeder) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// stop stops the feeder after its current batch and fails the test if
// publishing failed.
func (f *feeder) stop(e *Env) {
	e.t.Helper()
	f.stopOnce.Do(func() { close(f.stopCh) })
	select {
	case <-f.done:
	case <-time.After(4 * e.timeout):
		e.t.Fatalf("the publishing goroutine did not stop within %v", 4*e.timeout)
	}
	if err := f.failed(); err != nil {
		e.t.Fatalf("publishing: %v", err)
	}
}

// testGroupKeyOrderChurn publishes keyed messages continuously (at most 600
// unhandled at a time) while the group changes, each step triggered by
// progress: member 1 starts; member 2 joins; member 3 joins; member 1
// leaves (its context is cancelled); member 2 crashes while a handler runs
// (Harness.Kill, or an emulation); member 4 joins; member 5 joins and
// leaves again at once. Nothing may be lost; no message may be first
// handled before an earlier one of its key; no two calls of a key may run
// at once on live members. Redeliveries of messages handled before (after
// a crash, or of what a contiguous commit point had not covered on a
// rebalance) are allowed and logged per step.
func (s *suite) testGroupKeyOrderChurn(t *testing.T) {
	const concurrency, keys, perBatch, window = 8, 16, 4, 600
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	g := newGroupOrder()
	g.checkOnFailure(t)
	type live struct {
		m   *groupMember
		sub message.Subscriber
		run *subscription
	}
	start := func() *live {
		m := g.member()
		sub := e.Subscriber(e.Config(group, concurrency))
		return &live{m: m, sub: sub, run: e.subscribe(sub, topic, g.handler(m))}
	}
	var f *feeder
	wait := func(what string, cond func() bool) {
		t.Helper()
		e.Eventually(what, func() (bool, string) {
			if err := f.failed(); err != nil {
				t.Fatalf("while waiting for %s: publishing: %v", what, err)
			}
			return cond(), g.status()
		})
	}
	// progressed returns a condition that holds once n more messages were
	// handled than now.
	progressed := func(n int) func() bool {
		mark := g.handledCount()
		return func() bool { return g.handledCount() >= mark+n }
	}

	g.step("member 1 alone")
	m1 := start()
	f = e.feed(g, pub, topic, keys, perBatch, window)
	wait("member 1 to handle 100 messages", func() bool { return g.memberHandled(m1.m) >= 100 })

	g.step("member 2 joins")
	m2 := start()
	wait("member 2, after joining, to handle 50 messages", func() bool { return g.memberHandled(m2.m) >= 50 })

	g.step("member 3 joins")
	m3 := start()
	wait("member 3, after joining, to handle 50 messages", func() bool { return g.memberHandled(m3.m) >= 50 })

	g.step("member 1 leaves")
	done := progressed(100)
	e.stop(m1.run)
	if err := m1.sub.Close(); err != nil {
		t.Errorf("Close of member 1 after it left: %v", err)
	}
	wait("100 more messages handled since member 1 began to leave", done)

	// Crash member 2 while one of its handlers runs.
	m2.run.setStopping()
	g.step("member 2 crashes")
	e.Eventually("member 2 to run a handler, to crash it mid-work", func() (bool, string) {
		return g.killIfActive(m2.m), g.status()
	})
	how := "emulated (Harness.Kill is nil): its handler fails every call and it is closed"
	if s.h.Kill != nil {
		how = "Harness.Kill, then Close"
		s.h.Kill(t, m2.sub)
	}
	// Close in the background: closing a crashed client may wait for
	// timeouts while the others go on.
	var closeErr error
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		closeErr = m2.sub.Close()
	}()
	t.Cleanup(func() {
		select {
		case <-closed:
		case <-time.After(e.timeout):
		}
	})
	wait("100 more messages handled since member 2 crashed", progressed(100))

	g.step("member 4 joins")
	m4 := start()
	wait("member 4, after joining, to handle 50 messages", func() bool { return g.memberHandled(m4.m) >= 50 })

	// A member that leaves again at once: partitions (shards) that were
	// to move to it stay where they are or move back, possibly while
	// their owners still drain them.
	g.step("member 5 joins and leaves at once")
	done = progressed(100)
	m5 := start()
	e.stop(m5.run)
	if err := m5.sub.Close(); err != nil {
		t.Errorf("Close of member 5 after it left: %v", err)
	}
	wait("100 more messages handled since member 5 joined", done)

	f.stop(e)
	g.step("publishing stopped")
	wait("every published message to be handled", g.allHandled)

	select {
	case <-closed:
		if closeErr != nil {
			t.Logf("Close of the crashed member 2 returned %v", closeErr)
		}
	case <-time.After(e.timeout):
		t.Errorf("Close of the crashed member 2 did not return within %v", e.timeout)
	}
	if err := e.wait(m2.run, "Close of the crashed member"); err != nil {
		t.Logf("Subscribe of the crashed member 2 returned %v", err)
	}
	e.stop(m3.run)
	e.stop(m4.run)

	g.check(t)
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Logf("%d messages of %d keys in %d batches; crash: %s; handler calls per member %v; %d redeliveries, %d overlaps, %d out of order; by step: %s",
		g.published, len(g.keys), f.batches, how, g.perMemberLocked(), g.redelivered, g.overlaps.n, g.disorder.n, g.stepFiguresLocked())
}
