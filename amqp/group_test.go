package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// orderLog checks, across the members of a group, that per key the first
// successful handling of each message follows publish order and that no
// two handler calls of one key run at once.
type orderLog struct {
	mu         sync.Mutex
	active     map[string]int    // key -> running calls
	next       map[string]int    // key -> next sequence expected to succeed first
	done       map[string]bool   // id -> handled successfully
	byMember   map[int]int       // member -> successful calls
	violations []string          // out-of-order first handlings
	overlaps   int               // calls that started while another of the key ran
	redone     int               // successful handlings of already handled messages
	seqOf      map[string][2]any // id -> key, seq
	changed    chan struct{}
}

func newOrderLog() *orderLog {
	return &orderLog{active: map[string]int{}, next: map[string]int{}, done: map[string]bool{},
		byMember: map[int]int{}, seqOf: map[string][2]any{}, changed: make(chan struct{}, 1)}
}

// handler returns member's handler; latency draws each call's duration.
func (l *orderLog) handler(member int, latency func() time.Duration) message.Handler {
	return func(ctx context.Context, m *message.Message) error {
		seq, err := strconv.Atoi(m.Headers["seq"])
		if err != nil {
			panic("no seq header on " + m.ID)
		}
		l.mu.Lock()
		if l.active[m.Key] > 0 {
			l.overlaps++
		}
		l.active[m.Key]++
		l.mu.Unlock()
		if d := latency(); d > 0 {
			time.Sleep(d) // the handler's work, not synchronisation
		}
		l.mu.Lock()
		l.active[m.Key]--
		l.byMember[member]++
		if l.done[m.ID] {
			l.redone++
		} else {
			l.done[m.ID] = true
			if want := l.next[m.Key]; seq != want {
				l.violations = append(l.violations, fmt.Sprintf("key %s: seq %d handled first while %d was next", m.Key, seq, want))
			}
			if seq >= l.next[m.Key] {
				l.next[m.Key] = seq + 1
			}
		}
		l.mu.Unlock()
		select {
		case l.changed <- struct{}{}:
		default:
		}
		return nil
	}
}

func (l *orderLog) handled() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

func (l *orderLog) members() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for k, v := range l.byMember {
		out[k] = v
	}
	return out
}

// waitHandled waits until n distinct messages were handled.
func (l *orderLog) waitHandled(t *testing.T, n int, subs ...<-chan error) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for l.handled() < n {
		select {
		case <-l.changed:
		case <-deadline.C:
			t.Fatalf("handled %d of %d messages within %v (per member %v)", l.handled(), n, wait, l.members())
		}
		for _, c := range subs {
			select {
			case err := <-c:
				t.Fatalf("a Subscribe returned early: %v", err)
			default:
			}
		}
	}
}

func (l *orderLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) > 0 || l.overlaps > 0 {
		n := min(len(l.violations), 10)
		t.Fatalf("%d order violations, %d same-key overlaps across members; first: %v", len(l.violations), l.overlaps, l.violations[:n])
	}
}

// publishKeyed publishes keys × per messages, per key in sequence order
// (header "seq"), interleaving the keys.
func publishKeyed(t *testing.T, p *amqp.Publisher, topic, prefix string, keys, per int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	batch := make([]*message.Message, 0, keys)
	for s := 0; s < per; s++ {
		batch = batch[:0]
		for k := 0; k < keys; k++ {
			batch = append(batch, &message.Message{
				ID:      fmt.Sprintf("%s-k%d-%d", prefix, k, s),
				Key:     fmt.Sprintf("%s-k%d", prefix, k),
				Headers: map[string]string{"seq": strconv.Itoa(s)},
			})
		}
		if err := p.Publish(ctx, topic, batch...); err != nil {
			t.Fatal(err)
		}
	}
}

func startSub(t *testing.T, s *amqp.Subscriber, topic string, h message.Handler) (stop func(), errc <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan error, 1)
	go func() { c <- s.Subscribe(ctx, topic, h) }()
	return func() {
		cancel()
		select {
		case err := <-c:
			if err != nil {
				t.Errorf("Subscribe after cancel: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Subscribe did not return within %v of cancel", wait)
		}
	}, c
}

func randomLatency() time.Duration { return time.Duration(rand.IntN(2001)) * time.Microsecond }

func groupOpts(group string) []amqp.SubscriberOption {
	return []amqp.SubscriberOption{amqp.WithGroup(group), amqp.WithGroupHeartbeat(50 * time.Millisecond)}
}

func TestGroupKeepsKeyOrderAcrossMembers(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	p := newPub(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}

	l := newOrderLog()
	var errcs []<-chan error
	for i := range 3 {
		s := newSub(t, url, append(groupOpts("g"), amqp.WithConcurrency(8))...)
		stop, errc := startSub(t, s, topic, l.handler(i, randomLatency))
		defer stop()
		errcs = append(errcs, errc)
	}
	const keys, per = 32, 100
	publishKeyed(t, p, topic, "a", keys, per)
	l.waitHandled(t, keys*per, errcs...)
	l.check(t)
	spread := l.members()
	t.Logf("per member: %v, redelivered %d", spread, l.redone)
	if len(spread) < 2 {
		t.Fatalf("one member handled everything (%v); want the group to spread the work", spread)
	}
}

func TestGroupForeignMessagesGoToShardZero(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	p := newPub(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	// A foreign producer: no ferry headers at all.
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := ch.PublishWithContext(ctx, topic, "order.created", true, false, amqp091.Publishing{MessageId: fmt.Sprintf("f%d", i), Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	c := newCollector()
	s := newSub(t, url, groupOpts("g")...)
	stop, _ := startSub(t, s, topic, c.handle)
	defer stop()
	got := c.waitN(t, 5)
	for i, m := range got {
		if m.ID != fmt.Sprintf("f%d", i) || m.Delivery.Partition != 0 {
			t.Errorf("message %d: id %q partition %d; want f%d on shard 0, in order", i, m.ID, m.Delivery.Partition, i)
		}
	}
}

func TestGroupOptionsAreValidated(t *testing.T) {
	for name, o := range map[string]amqp.SubscriberOption{
		"shards 0":      amqp.WithShards(0),
		"shards 65":     amqp.WithShards(amqp.ShardBuckets + 1),
		"heartbeat 1ms": amqp.WithGroupHeartbeat(time.Millisecond),
		"heartbeat 1h":  amqp.WithGroupHeartbeat(time.Hour),
	} {
		_, err := amqp.NewSubscriber("amqp://127.0.0.1:1/", o)
		if !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestGroupOnQuorumQueues: shard queues can be quorum queues (which do not
// enforce exclusive consumers; single active consumer holds) and keep key
// order.
func TestGroupOnQuorumQueues(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	topology := amqp.WithOptions(amqp.WithQuorumQueues(), amqp.WithShards(4)) // the same for Declare and the members
	opts := append(groupOpts("g"), topology, amqp.WithConcurrency(4))
	p := newPub(t, url, topology)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	l := newOrderLog()
	var errcs []<-chan error
	for i := range 2 {
		stop, errc := startSub(t, newSub(t, url, opts...), topic, l.handler(i, randomLatency))
		defer stop()
		errcs = append(errcs, errc)
	}
	publishKeyed(t, p, topic, "q", 8, 50)
	l.waitHandled(t, 8*50, errcs...)
	l.check(t)
}

// TestCompetingConsumersShareOneQueue: the explicit round-robin mode keeps
// the one-queue layout (<topic>.<group>) and splits the work.
func TestCompetingConsumersShareOneQueue(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	opts := []amqp.SubscriberOption{amqp.WithGroup("g"), amqp.WithCompetingConsumers(), amqp.WithConcurrency(4)}
	p := newPub(t, url, amqp.WithCompetingConsumers())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	l := newOrderLog()
	var errcs []<-chan error
	for i := range 2 {
		stop, errc := startSub(t, newSub(t, url, opts...), topic, l.handler(i, func() time.Duration { return time.Millisecond }))
		defer stop()
		errcs = append(errcs, errc)
	}
	// Keyless-like spread: one key per message.
	publishKeyed(t, p, topic, "c", 200, 1)
	l.waitHandled(t, 200, errcs...)
	if got := l.members(); len(got) != 2 {
		t.Fatalf("per member %v; want both members of the competing group to get work", got)
	}
	// The broker holds exactly the one queue of this mode.
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(topic+".g", true, false, false, false, nil); err != nil {
		t.Fatalf("competing-mode queue %s.g: %v", topic, err)
	}
}
