package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/offsets"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// replayMember is one member's life in the replay tests: it consumes topic
// in group, failing the records fail picks, until stopped.
type replayMember struct {
	mu      sync.Mutex
	handled map[int64]int // offset -> successful deliveries
	cancel  context.CancelFunc
	done    chan struct{}
	ks      *messagetest.KillSwitch
	events  atomic.Int32 // EventCommitFailed with the truncation error
}

func (m *replayMember) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.handled)
}

func startReplayMember(t *testing.T, brokers []string, topic, group string, fail func(*message.Message) bool, crashable bool) *replayMember {
	return startReplayMemberBatch(t, brokers, topic, group, fail, crashable, false)
}

// startReplayMemberBatch is startReplayMember, with SubscribeBatch when
// batch is set (a failing record fails alone: message.BatchError).
func startReplayMemberBatch(t *testing.T, brokers []string, topic, group string, fail func(*message.Message) bool, crashable, batch bool) *replayMember {
	t.Helper()
	m := &replayMember{handled: map[int64]int{}, done: make(chan struct{})}
	obs := message.ObserverFunc(func(_ context.Context, ev message.Event) {
		if ev.Kind == message.EventCommitFailed && ev.Err != nil && containsTrunc(ev.Err) {
			m.events.Add(1)
		}
	})
	opts := []kafka.SubscriberOption{kafka.WithGroup(group), kafka.WithTopicCreation(1, -1),
		kafka.WithCommitInterval(200 * time.Millisecond), kafka.WithObserver(obs),
		kafka.WithRedeliveryBackoff(50*time.Millisecond, 200*time.Millisecond),
		kafka.WithClientOptions(kgo.FetchMaxWait(200 * time.Millisecond))}
	if crashable {
		m.ks = messagetest.NewKillSwitch(nil)
		opts = append(opts, kafka.WithClientOptions(kgo.Dialer(m.ks.DialContext)))
	}
	s, err := kafka.NewSubscriber(brokers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(message.WithReady(context.Background(), func() { close(ready) }))
	m.cancel = func() { cancel(); _ = s.Close() }
	h := func(_ context.Context, msg *message.Message) error {
		if fail != nil && fail(msg) {
			return errors.New("failing on purpose")
		}
		m.mu.Lock()
		m.handled[msg.Delivery.Offset]++
		m.mu.Unlock()
		return nil
	}
	go func() {
		defer close(m.done)
		if !batch {
			_ = s.Subscribe(ctx, topic, h)
			return
		}
		_ = s.SubscribeBatch(ctx, topic, func(ctx context.Context, msgs []*message.Message) error {
			var be message.BatchError
			for i, msg := range msgs {
				if err := h(ctx, msg); err != nil {
					be.Fail(i, err)
				}
			}
			if len(be.Failed) > 0 {
				return &be
			}
			return nil
		})
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("member not ready after 60 s")
	}
	return m
}

func containsTrunc(err error) bool {
	return strings.Contains(err.Error(), "do not all fit in the commit metadata")
}

// waitFor polls cond (an external condition: broker state, handler
// counts) until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committedSettled returns the group's committed offset of partition 0
// and how many offsets its ferry metadata has settled above it.
func committedSettled(t *testing.T, brokers []string, group, topic string) (int64, int64) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resps, err := kadm.NewClient(cl).FetchOffsetsForTopics(context.Background(), group, topic)
	if err != nil {
		return -1, 0
	}
	or, ok := resps.Lookup(topic, 0)
	if !ok || or.Err != nil {
		return -1, 0
	}
	base, spans, ok := offsets.DecodeSettled(or.Metadata)
	if !ok || base != or.At {
		return or.At, 0
	}
	var n int64
	for _, s := range spans {
		n += s.Last - s.First + 1
	}
	return or.At, n
}

// testHeadOfLineReplay: one key fails for as long as the first member
// runs while n later records of other keys in the same partition settle;
// the member then crashes (its connections cut, as after SIGKILL) or
// leaves (a rebalance). The next owner must be handed only the failing
// record (the commit the test waited for covered every other one), and
// nothing may be lost.
func testHeadOfLineReplay(t *testing.T, brokers []string, crash bool) {
	testHeadOfLineReplayBatch(t, brokers, crash, false)
}

func testHeadOfLineReplayBatch(t *testing.T, brokers []string, crash, batch bool) {
	const n = 10_000
	topic := fmt.Sprintf("ferry-replay-%d", time.Now().UnixNano())
	group := topic + "-g"
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msgs := []*message.Message{{Key: "stuck", Payload: []byte("head")}}
	for i := range n {
		msgs = append(msgs, &message.Message{Key: "k" + strconv.Itoa(i%97), Payload: []byte("x")})
	}
	a := startReplayMemberBatch(t, brokers, topic, group, func(m *message.Message) bool { return m.Key == "stuck" }, crash, batch)
	if err := pub.Publish(context.Background(), topic, msgs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "the first member to settle the later records", func() bool { return a.count() == n })
	waitFor(t, 30*time.Second, "a commit with every later record in its metadata", func() bool {
		at, settled := committedSettled(t, brokers, group, topic)
		return at == 0 && settled == n
	})
	if crash {
		a.ks.Kill()
		go a.cancel() // a dead process would not stop at all
	} else {
		a.cancel()
		<-a.done
	}
	b := startReplayMemberBatch(t, brokers, topic, group, nil, false, batch)
	defer func() { b.cancel(); <-b.done }()
	if err := pub.Publish(context.Background(), topic, &message.Message{Key: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	// The sentinel is offset n+1; the stuck record is offset 0.
	waitFor(t, 90*time.Second, "the next owner to handle the stuck record and the sentinel", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.handled[0] > 0 && b.handled[n+1] > 0
	})
	b.mu.Lock()
	replayed := len(b.handled) - 1 // without the sentinel
	b.mu.Unlock()
	t.Logf("replayed to the next owner: %d of %d (crash %v)", replayed, n+1, crash)
	if replayed > 1 {
		t.Errorf("the next owner was handed %d records, want at most 1 (the unsettled head)", replayed)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for off := int64(0); off <= n; off++ {
		if a.handled[off] == 0 && b.handled[off] == 0 {
			t.Fatalf("offset %d was never handled: lost", off)
		}
	}
}

func TestReplayAfterCrashKfake(t *testing.T) { testHeadOfLineReplay(t, newFake(t), true) }
func TestReplayAfterRebalanceKfake(t *testing.T) {
	testHeadOfLineReplay(t, newFake(t), false)
}

// TestReplayAfterCrashBatchKfake: SubscribeBatch shares the commit path.
func TestReplayAfterCrashBatchKfake(t *testing.T) {
	testHeadOfLineReplayBatch(t, newFake(t), true, true)
}
func TestReplayAfterCrashBroker(t *testing.T) { testHeadOfLineReplay(t, testenv.NeedKafka(t), true) }
func TestReplayAfterRebalanceBroker(t *testing.T) {
	testHeadOfLineReplay(t, testenv.NeedKafka(t), false)
}

// TestReplayMetadataTooLarge: every other record fails, thousands of
// gaps: the metadata holds what fits, the truncation is reported, and
// after a crash the next owner gets every failed record and the settled
// ones left out, nothing lost, fewer than all.
func TestReplayMetadataTooLarge(t *testing.T) {
	brokers := newFake(t)
	const n = 8000
	topic := fmt.Sprintf("ferry-replay-big-%d", time.Now().UnixNano())
	group := topic + "-g"
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var msgs []*message.Message
	for i := range n {
		msgs = append(msgs, &message.Message{Key: "k" + strconv.Itoa(i), Payload: []byte("x")})
	}
	fail := func(m *message.Message) bool { return m.Delivery.Offset%2 == 0 }
	a := startReplayMember(t, brokers, topic, group, fail, true)
	if err := pub.Publish(context.Background(), topic, msgs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "the odd offsets to settle", func() bool { return a.count() == n/2 })
	waitFor(t, 30*time.Second, "the truncation to be reported", func() bool { return a.events.Load() > 0 })
	var settled int64
	waitFor(t, 30*time.Second, "a commit with metadata", func() bool {
		_, settled = committedSettled(t, brokers, group, topic)
		return settled > 0
	})
	if settled >= n/2 {
		t.Fatalf("the metadata holds %d settled offsets, want fewer than %d (truncated)", settled, n/2)
	}
	a.ks.Kill()
	go a.cancel()
	b := startReplayMember(t, brokers, topic, group, nil, false)
	defer func() { b.cancel(); <-b.done }()
	waitFor(t, 90*time.Second, "the next owner to handle every record not in the metadata", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		a.mu.Lock()
		defer a.mu.Unlock()
		for off := int64(0); off < n; off++ {
			if a.handled[off] == 0 && b.handled[off] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("metadata held %d of %d settled; the next owner was handed %d of %d", settled, n/2, b.count(), n)
	if got := b.count(); got >= n {
		t.Errorf("the next owner was handed all %d records: the metadata skipped nothing", got)
	}
}

// TestReplayIgnoresForeignMetadata: a commit whose metadata ferry did not
// write (a Java consumer's string), or a ferry encoding for another
// offset, skips nothing.
func TestReplayIgnoresForeignMetadata(t *testing.T) {
	brokers := newFake(t)
	for _, meta := range []string{"consumer-java-7f3a", func() string { s, _ := offsets.EncodeSettled(2, []offsets.Span{{First: 4, Last: 9}}, 4000); return s }()} {
		topic := fmt.Sprintf("ferry-replay-foreign-%d", time.Now().UnixNano())
		group := topic + "-g"
		pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
		if err != nil {
			t.Fatal(err)
		}
		var msgs []*message.Message
		for i := range 10 {
			msgs = append(msgs, &message.Message{Key: "k" + strconv.Itoa(i)})
		}
		if err := pub.Publish(context.Background(), topic, msgs...); err != nil {
			t.Fatal(err)
		}
		pub.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 3, LeaderEpoch: -1, Metadata: meta})
		if err := kadm.NewClient(cl).CommitAllOffsets(context.Background(), group, os); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		m := startReplayMember(t, brokers, topic, group, nil, false)
		waitFor(t, 30*time.Second, "offsets 3 to 9", func() bool { return m.count() == 7 })
		m.cancel()
		<-m.done
		m.mu.Lock()
		for off := int64(3); off < 10; off++ {
			if m.handled[off] == 0 {
				t.Errorf("metadata %q: offset %d not handled", meta, off)
			}
		}
		m.mu.Unlock()
	}
}
