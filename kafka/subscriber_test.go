package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

const testWait = 60 * time.Second

// running is a Subscribe call in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func startSubscribe(t *testing.T, s *kafka.Subscriber, topic string, h message.Handler) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Subscribe(ctx, topic, h) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the Subscribe call and checks it returned nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Subscribe returned %v after cancel, want nil", err)
		}
	case <-time.After(testWait):
		t.Errorf("Subscribe did not return within %v of cancel", testWait)
	}
}

func newSubscriber(t *testing.T, brokers []string, opts ...kafka.SubscriberOption) *kafka.Subscriber {
	t.Helper()
	s, err := kafka.NewSubscriber(brokers, append([]kafka.SubscriberOption{fastGroup(), kafka.WithCommitInterval(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or the deadline passes.

func uniqueTopic(t *testing.T) string {
	return fmt.Sprintf("kt-%d-%d", time.Now().UnixNano(), rand.IntN(1e6))
}

func TestNonFerryRecordGetsDefaults(t *testing.T) {
	brokers := newFake(t)
	topic := uniqueTopic(t)
	p := newPublisher(t, brokers, kafka.WithTopicCreation(3, 1))
	if _, err := kadm.NewClient(p.Client()).CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	raw, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	at := time.UnixMilli(1_650_000_000_456)
	res := raw.ProduceSync(context.Background(), &kgo.Record{
		Topic: topic, Key: []byte("rk"), Value: []byte("raw"), Timestamp: at,
		Headers: []kgo.RecordHeader{{Key: "x", Value: []byte("y")}},
	})
	r, err := res.First()
	if err != nil {
		t.Fatal(err)
	}

	got := make(chan *message.Message, 1)
	s := newSubscriber(t, brokers, kafka.WithGroup("g-raw"))
	startSubscribe(t, s, topic, func(_ context.Context, m *message.Message) error {
		got <- m
		return nil
	})
	var m *message.Message
	select {
	case m = <-got:
	case <-time.After(testWait):
		t.Fatal("raw record not delivered")
	}
	wantID := fmt.Sprintf("%s-%d-%d", topic, r.Partition, r.Offset)
	if m.ID != wantID {
		t.Errorf("ID = %q, want %q", m.ID, wantID)
	}
	if m.Key != "rk" || string(m.Payload) != "raw" || !m.Time.Equal(at) {
		t.Errorf("key %q payload %q time %v, want rk raw %v", m.Key, m.Payload, m.Time, at)
	}
	if len(m.Headers) != 1 || m.Headers["x"] != "y" {
		t.Errorf("Headers = %v, want map[x:y]", m.Headers)
	}
	d := m.Delivery
	if d.Topic != topic || d.Group != "g-raw" || d.Partition != r.Partition || d.Offset != r.Offset || d.Attempt != 1 {
		t.Errorf("Delivery = %+v, want topic %s group g-raw partition %d offset %d attempt 1", d, topic, r.Partition, r.Offset)
	}
}

// committed returns the group's committed offsets for topic.
func committed(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Logf("FetchOffsets: %v", err)
		return nil
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

func TestSlowKeyDoesNotStallOtherPartitions(t *testing.T) {
	brokers := newFake(t)
	topic := uniqueTopic(t)
	p := newPublisher(t, brokers, kafka.WithTopicCreation(4, 1))
	ctx := context.Background()
	slow := &message.Message{Key: "slow", Payload: []byte("slow")}
	if err := p.Publish(ctx, topic, slow); err != nil {
		t.Fatal(err)
	}
	var others []*message.Message
	for i := range 200 {
		others = append(others, &message.Message{Key: "k" + strconv.Itoa(i%50), Payload: []byte(strconv.Itoa(i))})
	}
	if err := p.Publish(ctx, topic, others...); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)
	var (
		mu        sync.Mutex
		done      = map[string]int{}
		slowStart = make(chan *message.Message, 1)
	)
	s := newSubscriber(t, brokers, kafka.WithGroup("g-slow"), kafka.WithConcurrency(2), kafka.WithDrainTimeout(2*time.Second))
	run := startSubscribe(t, s, topic, func(ctx context.Context, m *message.Message) error {
		if m.Key == "slow" {
			slowStart <- m
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mu.Lock()
		done[m.ID]++
		mu.Unlock()
		return nil
	})
	var slowMsg *message.Message
	select {
	case slowMsg = <-slowStart:
	case <-time.After(testWait):
		t.Fatal("slow message never started")
	}
	testenv.WaitFor(t, testWait, "every other message handled while the slow key is blocked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range others {
			if done[m.ID] == 0 {
				return false
			}
		}
		return true
	})
	// Offsets of the other partitions get committed; the slow partition's
	// commit point stays at or before the slow record.
	adm := kadm.NewClient(p.Client())
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, testWait, "other partitions committed to their end", func() bool {
		c := committed(t, adm, "g-slow", topic)
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if o.Partition != slowMsg.Delivery.Partition && c[o.Partition] != o.Offset {
				ok = false
			}
		})
		return ok
	})
	if c := committed(t, adm, "g-slow", topic); c[slowMsg.Delivery.Partition] > slowMsg.Delivery.Offset {
		t.Fatalf("partition %d committed at %d, past the unsettled slow record at %d", slowMsg.Delivery.Partition, c[slowMsg.Delivery.Partition], slowMsg.Delivery.Offset)
	}
	free()
	testenv.WaitFor(t, testWait, "slow message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done[slowMsg.ID] == 1
	})
	run.stop(t)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range done {
		if n != 1 {
			t.Errorf("message %s handled %d times, want 1", id, n)
		}
	}
}

func TestRebalanceWithHandlersInFlightKfake(t *testing.T) {
	testRebalance(t, newFake(t))
}

func TestRebalanceWithHandlersInFlightBroker(t *testing.T) {
	testRebalance(t, testenv.NeedKafka(t))
}

// testRebalance consumes with one member, lets a second join and leave
// mid-stream while handlers run (slowly, some failing once), and checks
// that nothing is lost and that no committed offset is ever ahead of a
// record that was not handled successfully.
func testRebalance(t *testing.T, brokers []string) {
	topic := uniqueTopic(t)
	group := "g-" + topic
	p := newPublisher(t, brokers, kafka.WithTopicCreation(8, -1))
	ctx := context.Background()

	type pos struct {
		p int32
		o int64
	}
	var (
		mu      sync.Mutex
		okAt    = map[pos]bool{}   // positions handled successfully
		okIDs   = map[string]int{} // IDs handled successfully, with count
		byMem   = map[string]map[string]bool{"a": {}, "b": {}}
		failed  = map[string]bool{} // IDs failed once already
		running = map[string]bool{} // keys with a handler running
		errs    []string
	)
	handler := func(member string) message.Handler {
		return func(ctx context.Context, m *message.Message) error {
			mu.Lock()
			if running[m.Key] {
				errs = append(errs, fmt.Sprintf("key %s handled concurrently on one member", m.Key))
			}
			running[m.Key] = true
			h := fnv.New32a()
			h.Write([]byte(m.ID))
			fail := h.Sum32()%7 == 0 && !failed[m.ID]
			if fail {
				failed[m.ID] = true
			}
			mu.Unlock()
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond) // simulated work, not synchronisation
			mu.Lock()
			defer mu.Unlock()
			running[m.Key] = false
			if fail {
				return errors.New("first attempt fails")
			}
			okAt[pos{m.Delivery.Partition, m.Delivery.Offset}] = true
			okIDs[m.ID]++
			byMem[member][m.ID] = true
			return nil
		}
	}
	var published []string
	publish := func(n int) {
		t.Helper()
		var batch []*message.Message
		for i := range n {
			batch = append(batch, &message.Message{Key: "k" + strconv.Itoa(rand.IntN(40)), Payload: []byte(strconv.Itoa(i))})
		}
		if err := p.Publish(ctx, topic, batch...); err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			published = append(published, m.ID)
		}
	}
	count := func(member string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(byMem[member])
	}

	// The checker samples committed offsets while the group rebalances.
	adm := kadm.NewClient(p.Client())
	var violations []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range violations {
			t.Error(v)
		}
	})
	checkCommits := func() {
		c := committed(t, adm, group, topic)
		mu.Lock()
		defer mu.Unlock()
		for part, at := range c {
			for o := int64(0); o < at; o++ {
				if !okAt[pos{part, o}] {
					violations = append(violations, fmt.Sprintf("partition %d committed at %d but offset %d was not handled successfully", part, at, o))
					return
				}
			}
		}
	}
	stopCheck := make(chan struct{})
	checkDone := make(chan struct{})
	var stopOnce sync.Once
	endCheck := func() {
		stopOnce.Do(func() { close(stopCheck) })
		<-checkDone
	}
	t.Cleanup(endCheck)
	go func() {
		defer close(checkDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopCheck:
				return
			case <-tick.C:
				checkCommits()
			}
		}
	}()

	opts := []kafka.SubscriberOption{kafka.WithGroup(group), kafka.WithConcurrency(4), kafka.WithRedeliveryBackoff(time.Millisecond, 10*time.Millisecond), kafka.WithMaxPending(64)}
	publish(600)
	a := startSubscribe(t, newSubscriber(t, brokers, opts...), topic, handler("a"))
	testenv.WaitFor(t, testWait, "member a handling", func() bool { return count("a") >= 150 })

	b := startSubscribe(t, newSubscriber(t, brokers, opts...), topic, handler("b"))
	for count("b") < 100 {
		publish(100)
		testenv.WaitFor(t, testWait, "member b to get partitions and handle", func() bool { return count("b") > 0 || count("a") >= len(published)-50 })
	}
	b.stop(t) // leaves mid-stream, with a's handlers in flight
	publish(600)

	testenv.WaitFor(t, testWait, "every published message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range published {
			if okIDs[id] == 0 {
				return false
			}
		}
		return true
	})
	a.stop(t)
	endCheck()
	checkCommits()

	// On shutdown everything settled is committed: the group is at the end.
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c := committed(t, adm, group, topic)
	ends.Each(func(o kadm.ListedOffset) {
		if c[o.Partition] != o.Offset {
			t.Errorf("partition %d committed at %d after shutdown, want end offset %d", o.Partition, c[o.Partition], o.Offset)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range errs {
		t.Error(e)
	}
	dups := 0
	for _, n := range okIDs {
		if n > 1 {
			dups++
		}
	}
	t.Logf("%d messages; member a handled %d, member b %d; %d handled twice across the rebalances (at-least-once)", len(published), len(byMem["a"]), len(byMem["b"]), dups)
	if len(byMem["b"]) == 0 {
		t.Error("member b never handled anything: the rebalance did not happen")
	}
}
