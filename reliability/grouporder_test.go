package reliability_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// The group-order test checks the promise that a group shares the work
// and that messages with the same key are handled one at a time and in
// publish order across all members of the group, also while members join,
// leave gracefully and are killed. Each member is a separate process: the
// test binary re-executed with FERRY_RELIABILITY_CHILD=order-member. For
// every handler call it prints a start line and an end line
//
//	S <member> <call> <key> <seq> <attempt> <unix-nanos>
//	E <member> <call> <key> <seq> <attempt> <unix-nanos>
//
// (one Write per line under a mutex; the processes share the machine's
// wall clock), and the parent checks the collected calls.

const (
	orderMemberRole = "order-member"
	envMember       = "FERRY_REL_MEMBER" // the member's name in its output lines

	orderKeys   = 32
	orderPerKey = 250 // messages per key
	// Each round publishes the next orderBurst messages of every key in one
	// batch, so that each key has several messages queued at once (without
	// a backlog per key, even a round-robin work queue keeps key order);
	// 50 rounds, about 25 s of publishing.
	orderBurst       = 5
	orderRoundEvery  = 500 * time.Millisecond
	orderConcurrency = 8
	orderSeqHeader   = "rel-seq"

	// envCompeting=1 runs the AMQP test with amqp.WithCompetingConsumers
	// (one queue consumed round robin by every member): the mutant that
	// shows the test can fail.
	envCompeting = "FERRY_REL_AMQP_COMPETING"
)

// orderMember is the child process: a group member that reports each
// handler call. It runs until SIGTERM (graceful: Subscribe drains and
// returns) or SIGKILL.
func orderMember() error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	member := os.Getenv(envMember)
	var (
		outMu sync.Mutex
		buf   []byte
		calls uint64
	)
	// say writes one line with one Write call, unbuffered, so that every
	// line written before a SIGKILL reaches the parent whole.
	say := func(what string, call uint64, m *message.Message, seq string) {
		outMu.Lock()
		defer outMu.Unlock()
		buf = append(buf[:0], what...)
		buf = append(buf, ' ')
		buf = append(buf, member...)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, call, 10)
		buf = append(buf, ' ')
		buf = append(buf, m.Key...)
		buf = append(buf, ' ')
		buf = append(buf, seq...)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, int64(m.Delivery.Attempt), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = append(buf, '\n')
		_, _ = os.Stdout.Write(buf)
	}
	var callMu sync.Mutex
	h := func(_ context.Context, m *message.Message) error {
		callMu.Lock()
		calls++
		call := calls
		callMu.Unlock()
		seq := m.Headers[orderSeqHeader]
		say("S", call, m, seq)
		time.Sleep(time.Duration(rand.Int64N(int64(2*time.Millisecond) + 1))) // the work: 0-2 ms
		say("E", call, m, seq)
		return nil
	}

	topic, group, addr := os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envAddr)
	var (
		sub message.Subscriber
		err error
	)
	switch os.Getenv(envBroker) {
	case "kafka":
		sub, err = kafka.NewSubscriber([]string{addr}, kafka.WithGroup(group), kafka.WithConcurrency(orderConcurrency),
			kafka.WithTopicCreation(8, -1), kafka.WithCommitInterval(200*time.Millisecond), fastGroup())
	case "amqp":
		opts := []amqp.SubscriberOption{amqp.WithGroup(group), amqp.WithConcurrency(orderConcurrency)}
		if os.Getenv(envCompeting) == "1" {
			opts = append(opts, amqp.WithCompetingConsumers())
		}
		sub, err = amqp.NewSubscriber(addr, opts...)
	default:
		err = fmt.Errorf("unknown broker %q", os.Getenv(envBroker))
	}
	if err != nil {
		return err
	}
	defer sub.Close()
	return sub.Subscribe(ctx, topic, h)
}

// orderCall is one handler call seen in a member's output.
type orderCall struct {
	member     string
	call       uint64
	key        string
	seq        int
	attempt    int
	start, end int64 // unix nanos; end 0: no end line
}

func (c *orderCall) String() string {
	end := "-"
	if c.end != 0 {
		end = strconv.FormatInt(c.end, 10)
	}
	return fmt.Sprintf("%s#%d %s/%d attempt %d [%d, %s]", c.member, c.call, c.key, c.seq, c.attempt, c.start, end)
}

// orderProc is one member process.
type orderProc struct {
	name     string
	cmd      *exec.Cmd
	exited   chan struct{} // closed after Wait
	waitErr  error
	killedAt int64 // unix nanos of the SIGKILL, 0 if not killed
	termAt   int64 // unix nanos of the SIGTERM, 0 if none
	exitAt   int64
	lastLine int64 // the timestamp of its last line
	calls    int   // start lines
	open     int   // start lines without an end line yet
	ok       int   // end lines
}

// orderRun drives one group-order test and collects the members' output.
type orderRun struct {
	broker, addr, topic, group string

	mu     sync.Mutex
	procs  []*orderProc
	calls  map[string]*orderCall // by "<member>#<call>"
	done   map[string]bool       // "<key>/<seq>" handled successfully (an end line)
	stray  []string
	tick   chan struct{}
	starts int

	// armed, when set, is signalled with armedSig as soon as it starts a
	// handler call, so that the signal lands while calls are in flight.
	armed    *orderProc
	armedSig syscall.Signal
	sigErr   error
}

func (r *orderRun) start(t *testing.T) *orderProc {
	t.Helper()
	r.mu.Lock()
	r.starts++
	p := &orderProc{name: fmt.Sprintf("m%d", r.starts), exited: make(chan struct{})}
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), childEnv+"="+orderMemberRole, envMember+"="+p.name,
		envBroker+"="+r.broker, envAddr+"="+r.addr, envTopic+"="+r.topic, envGroup+"="+r.group)
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.line(p, sc.Text())
		}
		err := p.cmd.Wait() // after the last read, as StdoutPipe requires
		r.mu.Lock()
		p.waitErr = err
		p.exitAt = time.Now().UnixNano()
		r.mu.Unlock()
		close(p.exited)
		r.poke()
	}()
	return p
}

func (r *orderRun) poke() {
	select {
	case r.tick <- struct{}{}:
	default:
	}
}

// line records one output line of p.
func (r *orderRun) line(p *orderProc, s string) {
	f := strings.Fields(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	var c orderCall
	var ts int64
	var errs [4]error
	if len(f) == 7 && (f[0] == "S" || f[0] == "E") && f[1] == p.name {
		c.member, c.key = f[1], f[3]
		c.call, errs[0] = strconv.ParseUint(f[2], 10, 64)
		c.seq, errs[1] = strconv.Atoi(f[4])
		c.attempt, errs[2] = strconv.Atoi(f[5])
		ts, errs[3] = strconv.ParseInt(f[6], 10, 64)
	} else {
		errs[0] = errors.New("malformed")
	}
	if errors.Join(errs[:]...) != nil {
		r.stray = append(r.stray, s)
		return
	}
	id := c.member + "#" + f[2]
	p.lastLine = max(p.lastLine, ts)
	switch f[0] {
	case "S":
		if r.calls[id] != nil {
			r.stray = append(r.stray, s)
			return
		}
		c.start = ts
		r.calls[id] = &c
		p.calls++
		p.open++
		if r.armed == p {
			r.armed = nil
			if err := r.signalLocked(p, r.armedSig); err != nil && r.sigErr == nil {
				r.sigErr = err
			}
		}
	case "E":
		sc := r.calls[id]
		if sc == nil || sc.end != 0 || sc.key != c.key || sc.seq != c.seq {
			r.stray = append(r.stray, s)
			return
		}
		sc.end = ts
		p.open--
		p.ok++
		r.done[c.key+"/"+f[4]] = true
	}
	r.poke()
}

// waitFor waits until cond (called with r.mu held) holds or timeout
// passes, and reports whether it holds.
func (r *orderRun) waitFor(timeout time.Duration, cond func() bool) bool {
	check := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return cond()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for !check() {
		select {
		case <-r.tick:
		case <-poll.C:
		case <-deadline.C:
			return check()
		}
	}
	return true
}

// alive returns the members not signalled and not exited (r.mu held).
func (r *orderRun) alive() []*orderProc {
	var out []*orderProc
	for _, p := range r.procs {
		select {
		case <-p.exited:
			continue
		default:
		}
		if p.killedAt == 0 && p.termAt == 0 {
			out = append(out, p)
		}
	}
	return out
}

// busiest picks the live member to stop: the one with the most calls in
// flight, then the most calls, so that the signal lands mid-handling.
func (r *orderRun) busiest() *orderProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.alive()
	if len(a) == 0 {
		return nil
	}
	sort.SliceStable(a, func(i, j int) bool {
		if a[i].open != a[j].open {
			return a[i].open > a[j].open
		}
		return a[i].calls > a[j].calls
	})
	return a[0]
}

// signalLocked sends sig to p and records when (r.mu held).
func (r *orderRun) signalLocked(p *orderProc, sig syscall.Signal) error {
	now := time.Now().UnixNano()
	if sig == syscall.SIGKILL {
		p.killedAt = now
	} else {
		p.termAt = now
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.name, err)
	}
	return nil
}

func (r *orderRun) signal(t *testing.T, p *orderProc, sig syscall.Signal) {
	t.Helper()
	r.mu.Lock()
	err := r.signalLocked(p, sig)
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// signalBusy sends sig to p when p next starts a handler call (so that it
// lands mid-call), or after timeout if it starts none. It reports whether
// the signal went out on a start line.
func (r *orderRun) signalBusy(t *testing.T, p *orderProc, sig syscall.Signal, timeout time.Duration) bool {
	t.Helper()
	r.mu.Lock()
	r.armed, r.armedSig = p, sig
	r.mu.Unlock()
	fired := r.waitFor(timeout, func() bool { return r.armed == nil })
	r.mu.Lock()
	err := r.sigErr
	if !fired {
		r.armed = nil
		err = r.signalLocked(p, sig)
	}
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return fired
}

// orderChurn is one membership change, made when the given share of all
// messages has been handled.
type orderChurn struct {
	what string // "add", "term", "kill"
	at   float64
}

var orderChurns = []orderChurn{
	{"add", 0.10}, {"term", 0.20}, {"kill", 0.30}, {"add", 0.38},
	{"add", 0.48}, {"term", 0.58}, {"kill", 0.68}, {"add", 0.76},
}

// testGroupOrder runs the test on one broker: pub publishes to topic, whose
// group is group; the members connect to addr.
func testGroupOrder(t *testing.T, broker, addr, topic, group string, pub message.Publisher) {
	r := &orderRun{broker: broker, addr: addr, topic: topic, group: group,
		calls: map[string]*orderCall{}, done: map[string]bool{}, tick: make(chan struct{}, 1)}
	t.Cleanup(func() { // on any early return: no child outlives the test
		r.mu.Lock()
		procs := slices.Clone(r.procs)
		r.mu.Unlock()
		for _, p := range procs {
			select {
			case <-p.exited:
			default:
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
	})
	const total = orderKeys * orderPerKey
	handled := func() int { return len(r.done) } // r.mu held
	handledNow := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return handled()
	}

	// The publisher: orderBurst messages of every key per round, in seq
	// order, each round one Publish call after the previous one returned.
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(orderRoundEvery)
		defer tick.Stop()
		for round := range orderPerKey / orderBurst {
			msgs := make([]*message.Message, 0, orderBurst*orderKeys)
			for seq := round * orderBurst; seq < (round+1)*orderBurst; seq++ {
				for k := range orderKeys {
					key := fmt.Sprintf("k%02d", k)
					msgs = append(msgs, &message.Message{ID: fmt.Sprintf("%s-%d", key, seq), Key: key,
						Payload: []byte(strconv.Itoa(seq)), Headers: map[string]string{orderSeqHeader: strconv.Itoa(seq)}})
				}
			}
			ctx, cancel := context.WithTimeout(pubCtx, 30*time.Second)
			err := pub.Publish(ctx, topic, msgs...)
			cancel()
			if err != nil {
				pubDone <- fmt.Errorf("publish round %d: %w", round, err)
				return
			}
			select {
			case <-tick.C:
			case <-pubCtx.Done():
				pubDone <- pubCtx.Err()
				return
			}
		}
		pubDone <- nil
	}()
	// pubErr stops the publisher if it is still running and returns its
	// result; the cleanup makes sure it has returned before the test ends.
	pubErr := sync.OnceValue(func() error {
		stopPub()
		return <-pubDone
	})
	t.Cleanup(func() { _ = pubErr() })

	// Three members, steady: every one of them handles messages.
	var initial []*orderProc
	for range 3 {
		initial = append(initial, r.start(t))
	}
	if !r.waitFor(90*time.Second, func() bool {
		for _, p := range initial {
			if p.ok == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the three first members did not all handle a message within 90s (handled %d)", handledNow())
	}

	// Churn, driven by progress: each change once a share of the messages
	// is handled; after an add, until the new member handles messages.
	var log []string
	kills, terms, adds := 0, 0, 0
	for _, ch := range orderChurns {
		need := int(ch.at * total)
		if !r.waitFor(90*time.Second, func() bool { return handled() >= need }) {
			t.Fatalf("only %d of %d messages handled within 90s, waiting for %d before %s", handledNow(), total, need, ch.what)
		}
		switch ch.what {
		case "add":
			p := r.start(t)
			adds++
			if !r.waitFor(30*time.Second, func() bool { return p.ok > 0 }) {
				t.Logf("new member %s handled nothing within 30s", p.name)
			}
			log = append(log, fmt.Sprintf("+%s@%d", p.name, need))
		case "term", "kill":
			p := r.busiest()
			if p == nil {
				t.Fatalf("no live member to %s", ch.what)
			}
			sig := syscall.SIGTERM
			if ch.what == "kill" {
				sig = syscall.SIGKILL
				kills++
			} else {
				terms++
			}
			busy := r.signalBusy(t, p, sig, 10*time.Second)
			log = append(log, fmt.Sprintf("%s %s@%d(mid-call=%v)", ch.what, p.name, need, busy))
		}
	}

	// Let everything be handled, then stop the members gracefully.
	complete := r.waitFor(120*time.Second, func() bool { return handled() >= total })
	if err := pubErr(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("%v", err)
	}
	r.mu.Lock()
	rest, procs := r.alive(), slices.Clone(r.procs)
	r.mu.Unlock()
	for _, p := range rest {
		r.signal(t, p, syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("member %s did not exit within 60s", p.name)
		}
	}
	if !complete {
		t.Errorf("only %d of %d messages handled within 120s", handledNow(), total)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		var ee *exec.ExitError
		switch {
		case p.killedAt != 0:
			if !errors.As(p.waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("member %s: exit %v, want killed by SIGKILL", p.name, p.waitErr)
			}
		case p.waitErr != nil:
			t.Errorf("member %s: exit %v, want a clean exit on SIGTERM", p.name, p.waitErr)
		}
	}
	if len(r.stray) > 0 {
		t.Errorf("unexpected member output: %q", r.stray[:min(10, len(r.stray))])
	}
	a := analyzeOrder(r)
	t.Logf("%s: members %v; churn %v", broker, a.perMember, log)

	l := newLedger()
	msgs := make([]*message.Message, 0, total)
	for k := range orderKeys {
		for seq := range orderPerKey {
			msgs = append(msgs, &message.Message{ID: fmt.Sprintf("k%02d/%d", k, seq)})
		}
	}
	l.published(msgs, nil)
	for _, c := range a.ok {
		l.record(fmt.Sprintf("%s/%d", c.key, c.seq))
	}
	res := l.result()
	res.Fault, res.Adapter = "group membership changes", broker
	res.Injection = fmt.Sprintf("%d keys × %d msgs (%d per key every %v), group of child processes (concurrency %d): 3 steady, then %d added, %d SIGTERMed, %d SIGKILLed, each once a share of the messages was handled",
		orderKeys, orderPerKey, orderBurst, orderRoundEvery, orderConcurrency, adds, terms, kills)
	res.Extra = fmt.Sprintf("handler_calls=%d interrupted_by_kill=%d redeliveries=%d order_violations=%d overlaps=%d (different members %d) keys_affected=%d",
		a.calls, a.interrupted, a.redeliveries, len(a.violations), a.overlaps, a.crossOverlaps, len(a.keysAffected))
	res.Cmd = fmt.Sprintf("FERRY_REQUIRE_BROKERS=1 go test -race -count=1 -run '^%s$' -v ./reliability/", t.Name())
	report(t, res, l.missing())

	if a.unfinishedLive > 0 {
		t.Errorf("%d handler calls of members that were not killed never ended (graceful shutdown must let them finish), e.g. %v",
			a.unfinishedLive, a.unfinishedExamples)
	}
	if len(a.violations) > 0 || a.overlaps > 0 {
		t.Errorf("%s: per-key order broken across the group: %d order violations (a newer message handled before an older one of its key), "+
			"%d overlapping same-key calls (%d on different members), %d of %d keys affected %v\nviolations, e.g.:\n\t%s\noverlaps, e.g.:\n\t%s",
			broker, len(a.violations), a.overlaps, a.crossOverlaps, len(a.keysAffected), orderKeys, sortedKeys(a.keysAffected),
			strings.Join(a.violations[:min(5, len(a.violations))], "\n\t"),
			strings.Join(a.overlapExamples, "\n\t"))
	}
}

// orderAnalysis holds the figures computed from the collected calls.
type orderAnalysis struct {
	calls, interrupted, redeliveries int
	ok                               []*orderCall // successful calls
	violations                       []string
	overlaps, crossOverlaps          int
	overlapExamples                  []string
	keysAffected                     map[string]bool
	unfinishedLive                   int
	unfinishedExamples               []string
	perMember                        []string
}

// analyzeOrder checks the calls (r.mu held):
//
//   - per key, the first successful call of seq n must start after the
//     first successful call of every seq < n ended (else an order
//     violation);
//   - two calls of one key must not overlap in time: a call without an end
//     line (its member was killed) counts as running until the kill, or
//     until the member's last line if that is later;
//   - a call of a message after its first successful call ended is a
//     redelivery: allowed, counted.
func analyzeOrder(r *orderRun) orderAnalysis {
	a := orderAnalysis{keysAffected: map[string]bool{}}
	procs := map[string]*orderProc{}
	for _, p := range r.procs {
		procs[p.name] = p
		state := "running"
		switch {
		case p.killedAt != 0:
			state = "killed"
		case p.termAt != 0:
			state = "stopped"
		}
		a.perMember = append(a.perMember, fmt.Sprintf("%s(%s, %d calls, %d ok)", p.name, state, p.calls, p.ok))
	}
	type span struct {
		c          *orderCall
		start, end int64
	}
	byKey := map[string][]span{}
	first := map[string]*orderCall{} // "<key>/<seq>" -> first successful call
	for _, c := range r.calls {
		a.calls++
		end := c.end
		if end == 0 {
			p := procs[c.member]
			if p.killedAt != 0 {
				a.interrupted++
				end = max(p.killedAt, p.lastLine)
			} else {
				a.unfinishedLive++
				if len(a.unfinishedExamples) < 5 {
					a.unfinishedExamples = append(a.unfinishedExamples, c.String())
				}
				end = p.exitAt
			}
		} else {
			a.ok = append(a.ok, c)
			id := fmt.Sprintf("%s/%d", c.key, c.seq)
			if f := first[id]; f == nil || c.end < f.end {
				first[id] = c
			}
		}
		byKey[c.key] = append(byKey[c.key], span{c, c.start, end})
	}
	for _, c := range r.calls {
		if f := first[fmt.Sprintf("%s/%d", c.key, c.seq)]; f != nil && f != c && c.start >= f.end {
			a.redeliveries++
		}
	}
	keys := sortedKeys(byKey)
	for _, key := range keys {
		// Order: the first successful handling of each seq, in seq order.
		var prevEnd int64
		var prev *orderCall
		for seq := range orderPerKey {
			f := first[fmt.Sprintf("%s/%d", key, seq)]
			if f == nil {
				continue // lost: counted by the ledger
			}
			if prev != nil && f.start < prevEnd {
				a.keysAffected[key] = true
				a.violations = append(a.violations, fmt.Sprintf("%s started %.3fms before the first successful handling of an earlier seq ended (%s)",
					f, float64(prevEnd-f.start)/1e6, prev))
			}
			if f.end > prevEnd {
				prevEnd, prev = f.end, f
			}
		}
		// Overlap: sort by start; a call that starts before the latest end
		// so far runs concurrently with that call.
		spans := byKey[key]
		sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
		var cur span
		for i, s := range spans {
			if i > 0 && s.start < cur.end {
				a.overlaps++
				a.keysAffected[key] = true
				where := "same member"
				if s.c.member != cur.c.member {
					a.crossOverlaps++
					where = "different members"
				}
				if len(a.overlapExamples) < 5 {
					a.overlapExamples = append(a.overlapExamples, fmt.Sprintf("%s overlaps %s (%s, %.3fms)",
						s.c, cur.c, where, float64(min(cur.end, s.end)-s.start)/1e6))
				}
			}
			if i == 0 || s.end > cur.end {
				cur = s
			}
		}
	}
	return a
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestGroupOrderKafka runs a Kafka consumer group of member processes
// through joins, graceful leaves and SIGKILLs while 32 keys are published:
// nothing lost, per-key order kept and no two calls of a key at once.
func TestGroupOrderKafka(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	topic := name("rel_order_kafka")
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(8, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deleteKafkaTopics(t, pub, topic)
	if err := pub.Publish(context.Background(), topic); err != nil { // creates the topic
		t.Fatal(err)
	}
	testGroupOrder(t, "kafka", brokers[0], topic, topic+"_g", pub)
}

// TestGroupOrderAMQP does the same on RabbitMQ (a sharded group, the
// default). With FERRY_REL_AMQP_COMPETING=1 the group is one queue that
// every member consumes round robin (amqp.WithCompetingConsumers), and
// the test fails with order violations and same-key overlaps on every
// key: the proof that it can fail.
func TestGroupOrderAMQP(t *testing.T) {
	raw := testenv.NeedAMQP(t)
	topic := name("rel_order_amqp")
	const group = "g"
	base := topic + "." + group // the group's queue name (and shard queues' prefix)
	queues := []string{base}
	for i := range amqp.DefaultShards {
		queues = append(queues, fmt.Sprintf("%s.%d", base, i))
	}
	deleteAMQP(t, raw, topic, queues...)
	deleteAMQP(t, raw, base)              // the group's router exchange
	deleteAMQP(t, raw, base+".unsharded") // its alternate exchange
	deleteAMQP(t, raw, base+".members")   // the members' heartbeats
	var opts []amqp.PublisherOption       // the subscribers' topology, for Declare
	if os.Getenv(envCompeting) == "1" {
		opts = append(opts, amqp.WithCompetingConsumers())
	}
	pub, err := amqp.NewPublisher(raw, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Declare(context.Background(), topic, group); err != nil {
		t.Fatal(err)
	}
	testGroupOrder(t, "amqp", raw, topic, group, pub)
}
