package messagetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// The batch handler tests (message.BatchSubscriber). They run unless
// Features.NoBatch is set; the harness's subscribers must then implement
// message.BatchSubscriber.

// batchTests lists the batch handler tests, in the order Run runs them.
// Keep it in step with the list in doc.go.
func (s *suite) batchTests() []testCase {
	return []testCase{
		{"batch: round trip keeps ID, key, payload and headers, each message once", s.testBatchRoundTrip, needsBatch},
		{"batch: batches never pass the count and byte limits, and a lone message is handed over", s.testBatchLimits, needsBatch},
		{"batch: per-key order across batches at concurrency 8 with random partial failures", s.testBatchKeyOrder, needsBatchOrder},
		{"batch: each message settles exactly once, and a new member gets none again", s.testBatchExactlyOnce, needsBatchOrder},
		{"batch: a failed message holds its partition's commit point until it settles", s.testBatchFailedHoldsCommit, needsBatchOrder},
		{"batch: graceful shutdown mid-batch settles the running batch and hands on the rest", s.testBatchGracefulShutdown, needsBatch},
		{"batch: a member joining mid-batch (rebalance) loses nothing", s.testBatchRebalance, needsBatch},
	}
}

func needsBatch(f Features) string {
	if f.NoBatch {
		return "NoBatch to be false"
	}
	return ""
}

func needsBatchOrder(f Features) string {
	if m := needsBatch(f); m != "" {
		return m
	}
	return needsKeyOrder(f)
}

// batchSubscriber returns a subscriber of the harness as a
// message.BatchSubscriber, failing the test when it is not one.
func (e *Env) batchSubscriber(cfg SubscriberConfig) message.BatchSubscriber {
	e.t.Helper()
	sub := e.Subscriber(cfg)
	bs, ok := sub.(message.BatchSubscriber)
	if !ok {
		e.t.Fatalf("the harness's subscriber %T does not implement message.BatchSubscriber (set Features.NoBatch if the adapter has no batch handlers)", sub)
	}
	return bs
}

// subscribeBatch runs SubscribeBatch in the background until the test
// ends, like subscribe.
func (e *Env) subscribeBatch(parent context.Context, sub message.BatchSubscriber, topic string, h message.BatchHandler, opts ...message.BatchOption) *subscription {
	ctx, cancel := context.WithCancel(parent)
	s := &subscription{topic: topic, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = sub.SubscribeBatch(ctx, topic, h, opts...)
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
			e.t.Errorf("SubscribeBatch(%q) did not return within %v of its context being cancelled", topic, e.timeout)
		}
	})
	return s
}

// keyed returns perKey messages for each of keys keys, interleaved, with
// payload "<seq>" and their key and seq by ID.
func keyed(keys, perKey int, prefix string) ([]*message.Message, map[string]bkeySeq) {
	where := make(map[string]bkeySeq, keys*perKey)
	msgs := make([]*message.Message, 0, keys*perKey)
	for i := range perKey {
		for k := range keys {
			m := &message.Message{ID: message.NewID(), Key: fmt.Sprintf("%s%02d", prefix, k), Payload: []byte(strconv.Itoa(i))}
			where[m.ID] = bkeySeq{m.Key, i}
			msgs = append(msgs, m)
		}
	}
	return msgs, where
}

type bkeySeq struct {
	key string
	seq int
}

func (s *suite) testBatchRoundTrip(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	var sent []*message.Message
	for i := range 60 {
		sent = append(sent, &message.Message{
			ID:      message.NewID(),
			Key:     fmt.Sprintf("k%d", i%6),
			Payload: fmt.Appendf(nil, "payload-%d", i),
			Headers: map[string]string{"n": strconv.Itoa(i)},
		})
	}
	byID := make(map[string]*message.Message, len(sent))
	for _, m := range sent {
		byID[m.ID] = m
	}
	var mu sync.Mutex
	got := map[string]int{}
	var problems []string
	h := func(_ context.Context, msgs []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if len(msgs) == 0 {
			problems = append(problems, "an empty batch")
		}
		for _, m := range msgs {
			want, ok := byID[m.ID]
			switch {
			case !ok:
				problems = append(problems, "unknown ID "+m.ID)
				continue
			case m.Key != want.Key || string(m.Payload) != string(want.Payload) || m.Headers["n"] != want.Headers["n"]:
				problems = append(problems, fmt.Sprintf("%s arrived as key %q payload %q headers %v", m.ID, m.Key, m.Payload, m.Headers))
			case m.Delivery.Topic != topic || m.Delivery.Attempt != 1:
				problems = append(problems, fmt.Sprintf("%s: Delivery %+v, want topic %q and attempt 1", m.ID, m.Delivery, topic))
			}
			got[m.ID]++
		}
		return nil
	}
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 2)), topic, h)
	e.Publish(pub, topic, sent...)
	e.Eventually("all 60 messages in batches", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(sent), fmt.Sprintf("%d of %d", len(got), len(sent))
	})
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		if n != 1 {
			problems = append(problems, fmt.Sprintf("%s handled %d times", id, n))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("batch round trip: %v", problems[:min(len(problems), 10)])
	}
}

func (s *suite) testBatchLimits(t *testing.T) {
	const maxN, maxBytes = 7, 200
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	var msgs []*message.Message
	for i := range 150 {
		msgs = append(msgs, &message.Message{ID: message.NewID(), Key: fmt.Sprintf("k%d", i%10), Payload: make([]byte, (i*13)%60)})
	}
	var mu sync.Mutex
	got := map[string]bool{}
	var over []string
	h := func(_ context.Context, batch []*message.Message) error {
		n := 0
		for _, m := range batch {
			n += len(m.Payload)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(batch) == 0 || len(batch) > maxN || (len(batch) > 1 && n > maxBytes) {
			over = append(over, fmt.Sprintf("%d messages, %d bytes", len(batch), n))
		}
		for _, m := range batch {
			got[m.ID] = true
		}
		return nil
	}
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 2)), topic, h,
		message.WithBatchMaxMessages(maxN), message.WithBatchMaxBytes(maxBytes), message.WithBatchMaxWait(20*time.Millisecond))
	e.Publish(pub, topic, msgs...)
	e.Eventually("150 messages in batches", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(msgs), fmt.Sprintf("%d of %d", len(got), len(msgs))
	})
	// A lone message is handed over with nothing more arriving.
	lone := &message.Message{ID: message.NewID(), Key: "lone", Payload: []byte("x")}
	e.Publish(pub, topic, lone)
	e.Eventually("a lone message in a batch of its own", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return got[lone.ID], "not delivered"
	})
	mu.Lock()
	defer mu.Unlock()
	if len(over) > 0 {
		t.Fatalf("batches passed the limits (%d messages, %d bytes): %v", maxN, maxBytes, over[:min(len(over), 10)])
	}
}

// batchJudge checks batches against the contract while failing messages
// at random: a key's messages in a batch are consecutive from the first
// one not yet settled (the ones before the key's first failure in each
// earlier batch settled), and no key is in two running batches.
type batchJudge struct {
	where    map[string]bkeySeq
	failRate int // one in failRate messages fails (while Attempt < 4)
	whole    int // one in whole batches fails as a whole (0: never)

	mu         sync.Mutex
	done       map[string]int // per key: how many settled
	running    map[string]bool
	settled    int
	partials   int
	violations []string
}

func newBatchJudge(where map[string]bkeySeq, failRate, whole int) *batchJudge {
	return &batchJudge{where: where, failRate: failRate, whole: whole, done: map[string]int{}, running: map[string]bool{}}
}

func (j *batchJudge) bad(f string, a ...any) {
	if len(j.violations) < 20 {
		j.violations = append(j.violations, fmt.Sprintf(f, a...))
	}
}

func (j *batchJudge) handler(_ context.Context, msgs []*message.Message) error {
	j.mu.Lock()
	next := map[string]int{}
	for _, m := range msgs {
		p, ok := j.where[m.ID]
		if !ok {
			j.bad("unknown message %s", m.ID)
			continue
		}
		if _, seen := next[p.key]; !seen {
			if j.running[p.key] {
				j.bad("key %s in two running batches", p.key)
			}
			j.running[p.key] = true
			next[p.key] = j.done[p.key]
		}
		if p.seq != next[p.key] {
			j.bad("key %s: got #%d in a batch, want #%d (the first not settled, then in order)", p.key, p.seq, next[p.key])
		}
		next[p.key] = p.seq + 1
	}
	j.mu.Unlock()

	var be message.BatchError
	whole := j.whole > 0 && rand.IntN(j.whole) == 0 && msgs[0].Delivery.Attempt < 4
	if !whole {
		for i, m := range msgs {
			if m.Delivery.Attempt < 4 && rand.IntN(j.failRate) == 0 {
				be.Fail(i, errors.New("random failure"))
			}
		}
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	for _, m := range msgs {
		delete(j.running, j.where[m.ID].key)
	}
	if whole {
		return errors.New("the whole batch failed")
	}
	failedKey := map[string]bool{}
	failed := map[int]bool{}
	for _, f := range be.Failed {
		failed[f.Index] = true
	}
	for i, m := range msgs {
		p := j.where[m.ID]
		if failed[i] || failedKey[p.key] {
			failedKey[p.key] = true
			continue
		}
		j.done[p.key]++
		j.settled++
	}
	if len(be.Failed) > 0 {
		j.partials++
	}
	return be.Err()
}

func (j *batchJudge) status() (int, []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.settled, append([]string(nil), j.violations...)
}

func (s *suite) testBatchKeyOrder(t *testing.T) {
	const keys, perKey = 16, 60
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	msgs, where := keyed(keys, perKey, "key-")
	j := newBatchJudge(where, 10, 20)
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 8)), topic, j.handler,
		message.WithBatchMaxMessages(20), message.WithBatchMaxWait(2*time.Millisecond))
	e.Publish(pub, topic, msgs...)
	e.Eventually("every message settled once, per key in order", func() (bool, string) {
		n, v := j.status()
		if len(v) > 0 {
			t.Fatalf("violations: %v", v)
		}
		return n == len(msgs), fmt.Sprintf("%d of %d settled", n, len(msgs))
	})
	if _, v := j.status(); len(v) > 0 {
		t.Fatalf("violations: %v", v)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.partials == 0 {
		t.Fatal("no batch failed partially: the test proved nothing")
	}
}

func (s *suite) testBatchExactlyOnce(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	msgs, where := keyed(8, 25, "k")
	j := newBatchJudge(where, 8, 0)
	run := e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 4)), topic, j.handler,
		message.WithBatchMaxMessages(16), message.WithBatchMaxWait(2*time.Millisecond))
	e.Publish(pub, topic, msgs...)
	e.Eventually("every message settled once", func() (bool, string) {
		n, _ := j.status()
		return n == len(msgs), fmt.Sprintf("%d of %d settled", n, len(msgs))
	})
	e.stop(run)
	if _, v := j.status(); len(v) > 0 {
		t.Fatalf("violations: %v", v)
	}
	// A new member of the group gets nothing that settled: only what is
	// published now.
	var mu sync.Mutex
	var again []string
	marker := &message.Message{ID: message.NewID(), Key: "marker"}
	gotMarker := false
	h := func(_ context.Context, batch []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			if m.ID == marker.ID {
				gotMarker = true
			} else {
				again = append(again, m.ID)
			}
		}
		return nil
	}
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 1)), topic, h)
	e.Publish(pub, topic, marker)
	e.Eventually("the marker at the new member", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return gotMarker, "not yet"
	})
	mu.Lock()
	defer mu.Unlock()
	if len(again) > 0 {
		t.Fatalf("the new member got %d settled messages again (first %v)", len(again), again[:min(3, len(again))])
	}
}

func (s *suite) testBatchFailedHoldsCommit(t *testing.T) {
	const n, failing = 30, 10
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	msgs, where := keyed(1, n, "held")
	var mu sync.Mutex
	failures := 0
	var firstSeen []int
	ha := func(_ context.Context, batch []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		var be message.BatchError
		for i, m := range batch {
			if where[m.ID].seq == failing {
				failures++
				be.Fail(i, errors.New("always fails here"))
			}
		}
		return be.Err()
	}
	run := e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 2)), topic, ha,
		message.WithBatchMaxMessages(8), message.WithBatchMaxWait(2*time.Millisecond))
	e.Publish(pub, topic, msgs...)
	e.Eventually("message #10 failing three times", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return failures >= 3, fmt.Sprintf("%d failures", failures)
	})
	e.stop(run)
	// The next member starts where the first stopped settling: at #10,
	// never past it, and gets the key's later messages in order.
	var seen []int
	hb := func(_ context.Context, batch []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			seen = append(seen, where[m.ID].seq)
		}
		return nil
	}
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 2)), topic, hb)
	e.Eventually("the new member to get #10 to #29", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= n-failing, fmt.Sprintf("%v", seen)
	})
	mu.Lock()
	defer mu.Unlock()
	firstSeen = seen[:n-failing]
	for i, seq := range firstSeen {
		if seq != failing+i {
			t.Fatalf("the next member got %v, want #%d to #%d in order (the failed message and the later ones of its key, none before)", firstSeen, failing, n-1)
		}
	}
}

func (s *suite) testBatchGracefulShutdown(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	msgs, where := keyed(4, 10, "k")
	var mu sync.Mutex
	settledA := map[string]bool{}
	var running []string
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	ha := func(ctx context.Context, batch []*message.Message) error {
		first := false
		once.Do(func() { first = true })
		if first {
			mu.Lock()
			for _, m := range batch {
				running = append(running, m.ID)
			}
			mu.Unlock()
			close(started)
			<-release
			if ctx.Err() != nil {
				return ctx.Err() // the drain timeout passed: the suite's is long, so it must not
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			settledA[m.ID] = true
		}
		return nil
	}
	run := e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 1)), topic, ha,
		message.WithBatchMaxMessages(5), message.WithBatchMaxWait(2*time.Millisecond))
	e.Publish(pub, topic, msgs...)
	<-started
	stopped := make(chan error, 1)
	go func() {
		run.setStopping()
		run.cancel()
		<-run.done
		stopped <- run.err
	}()
	close(release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("SubscribeBatch returned %v after its context was cancelled, want nil", err)
		}
	case <-time.After(e.timeout):
		t.Fatalf("SubscribeBatch did not return within %v of a graceful shutdown", e.timeout)
	}
	mu.Lock()
	for _, id := range running {
		if !settledA[id] {
			t.Fatalf("message %v of the batch running at shutdown was not settled", where[id])
		}
	}
	mu.Unlock()
	// The rest goes to the next member; what the first settled does not.
	gotB := map[string]bool{}
	var twice []bkeySeq
	hb := func(_ context.Context, batch []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			if settledA[m.ID] {
				twice = append(twice, where[m.ID])
			}
			gotB[m.ID] = true
		}
		return nil
	}
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 1)), topic, hb)
	e.Eventually("the messages the first member did not settle at the next one", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for _, m := range msgs {
			if !settledA[m.ID] && !gotB[m.ID] {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d missing", missing)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(twice) > 0 {
		t.Fatalf("messages settled before the graceful shutdown came again: %v", twice)
	}
}

func (s *suite) testBatchRebalance(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	msgs, _ := keyed(16, 20, "k")
	var mu sync.Mutex
	handled := map[string]bool{}
	started := make(chan struct{})
	joined := make(chan struct{})
	var once sync.Once
	record := func(batch []*message.Message) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			handled[m.ID] = true
		}
	}
	ha := func(ctx context.Context, batch []*message.Message) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(started)
			select {
			case <-joined: // the second member joins while this batch runs
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		record(batch)
		return nil
	}
	hb := func(_ context.Context, batch []*message.Message) error {
		record(batch)
		return nil
	}
	opts := []message.BatchOption{message.WithBatchMaxMessages(10), message.WithBatchMaxWait(2 * time.Millisecond)}
	e.subscribeBatch(context.Background(), e.batchSubscriber(e.Config(group, 2)), topic, ha, opts...)
	e.Publish(pub, topic, msgs...)
	<-started
	var readyOnce sync.Once
	ready := message.WithReady(context.Background(), func() { readyOnce.Do(func() { close(joined) }) })
	e.subscribeBatch(ready, e.batchSubscriber(e.Config(group, 2)), topic, hb, opts...)
	e.Eventually("every message handled by one member or the other", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for _, m := range msgs {
			if !handled[m.ID] {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d missing", missing, len(msgs))
	})
}
