package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// shareBackends runs fn on kfake and on the real broker (which skips
// unless FERRY_REQUIRE_BROKERS is set or a broker is up).
func shareBackends(t *testing.T, fn func(t *testing.T, brokers []string)) {
	t.Run("kfake", func(t *testing.T) { fn(t, newFake(t)) })
	t.Run("broker", func(t *testing.T) { fn(t, testenv.NeedKafka(t)) })
}

// fastShare makes share-group joins quick in tests: heartbeats as often
// as the broker allows and short fetch waits.
func fastShare() kafka.Option {
	return kafka.WithClientOptions(kgo.FetchMaxWait(100 * time.Millisecond))
}

func newShareSubscriber(t *testing.T, brokers []string, group string, opts ...kafka.SubscriberOption) *kafka.Subscriber {
	t.Helper()
	s, err := kafka.NewSubscriber(brokers, append([]kafka.SubscriberOption{kafka.WithShareGroup(group), fastShare(),
		kafka.WithRedeliveryBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// setGroupConfig sets share group configuration entries, as an operator
// would with kafka-configs.sh --entity-type groups.
func setGroupConfig(t testing.TB, brokers []string, group string, kv map[string]string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for k, v := range kv {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value, c.Op = k, kmsg.StringPtr(v), kmsg.IncrementalAlterConfigOpSet
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(context.Background(), cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("set group config %v of %q: %v", kv, group, err)
	}
}

// publishN publishes n messages with IDs prefix-0 ... prefix-(n-1).
func publishN(t *testing.T, p *kafka.Publisher, topic, prefix string, n int) []string {
	t.Helper()
	msgs := make([]*message.Message, n)
	ids := make([]string, n)
	for i := range msgs {
		ids[i] = prefix + "-" + strconv.Itoa(i)
		msgs[i] = &message.Message{ID: ids[i], Payload: []byte(ids[i])}
	}
	if err := p.Publish(context.Background(), topic, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return ids
}

// calls records handler calls by message ID.
type calls struct {
	mu       sync.Mutex
	byID     map[string][]message.Delivery
	byMember map[int]int
	total    int
	changed  chan struct{}
}

func newCalls() *calls {
	return &calls{byID: map[string][]message.Delivery{}, byMember: map[int]int{}, changed: make(chan struct{}, 1)}
}

func (c *calls) add(member int, m *message.Message) {
	c.mu.Lock()
	c.byID[m.ID] = append(c.byID[m.ID], m.Delivery)
	c.byMember[member]++
	c.total++
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *calls) deliveries(id string) []message.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]message.Delivery(nil), c.byID[id]...)
}

// waitUntil waits until cond holds on the recorded calls, failing with
// what was seen after the timeout.
func (c *calls) waitUntil(t *testing.T, what string, cond func(c *calls) bool) {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok := cond(c)
		seen := fmt.Sprintf("%d calls of %d messages, per member %v", c.total, len(c.byID), c.byMember)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; saw %s", testWait, what, seen)
		}
	}
}

func TestShareGroupAcceptsEachMessageOnce(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		topic := uniqueTopic(t)
		p := newPublisher(t, brokers, kafka.WithTopicCreation(2, -1))
		ids := publishN(t, p, topic, "m", 50)
		group := "share-" + topic
		c := newCalls()
		s := newShareSubscriber(t, brokers, group, kafka.WithConcurrency(4), kafka.WithTopicCreation(2, -1))
		r := startSubscribe(t, s, topic, func(_ context.Context, m *message.Message) error {
			c.add(0, m)
			return nil
		})
		c.waitUntil(t, "every message handled", func(c *calls) bool { return len(c.byID) == len(ids) })
		r.stop(t)
		for _, id := range ids {
			if d := c.deliveries(id); len(d) != 1 || d[0].Attempt != 1 || d[0].Group != group || d[0].Topic != topic {
				t.Errorf("%s: deliveries %+v, want one with attempt 1, group %q", id, d, group)
			}
		}
	})
}

// TestShareGroupReleaseRejectAndNoAutoAccept: a failed message is released
// and comes back with the broker's delivery count as Attempt; a permanent
// error rejects it for good; and no failure is ever settled by franz-go's
// auto-accept of the previous poll. Every message fails on its first
// delivery, in polls of 4 records with 4 workers, with a redelivery
// backoff between the failure and the release: a subscriber that polled
// again while a failed record waited would auto-accept it, and that
// message would never come back.
func TestShareGroupReleaseRejectAndNoAutoAccept(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		topic := uniqueTopic(t)
		p := newPublisher(t, brokers, kafka.WithTopicCreation(1, -1))
		ids := publishN(t, p, topic, "m", 40)
		group := "share-" + topic
		c := newCalls()
		s := newShareSubscriber(t, brokers, group, kafka.WithConcurrency(4), kafka.WithMaxPending(4),
			kafka.WithRedeliveryBackoff(20*time.Millisecond, 20*time.Millisecond))
		startSubscribe(t, s, topic, func(_ context.Context, m *message.Message) error {
			c.add(0, m)
			switch {
			case m.ID == "m-7":
				return retry.Permanent(errors.New("never valid"))
			case m.ID == "m-3" && m.Delivery.Attempt < 3:
				return errors.New("fails twice")
			case m.Delivery.Attempt == 1:
				return errors.New("fails once")
			}
			return nil
		})
		// m-7 was rejected before the marker was published; released
		// records become available at once, ahead of later offsets, so a
		// release instead of a reject would show before the marker.
		c.waitUntil(t, "every message handled until it succeeded", func(c *calls) bool {
			for _, id := range ids {
				want := 2
				switch id {
				case "m-7":
					want = 1
				case "m-3":
					want = 3
				}
				if len(c.byID[id]) < want {
					return false
				}
			}
			return true
		})
		publishN(t, p, topic, "marker", 1)
		c.waitUntil(t, "the marker handled", func(c *calls) bool { return len(c.byID["marker-0"]) > 0 })
		for _, id := range ids {
			d := c.deliveries(id)
			var want []int
			switch id {
			case "m-7":
				want = []int{1}
			case "m-3":
				want = []int{1, 2, 3}
			default:
				want = []int{1, 2}
			}
			var got []int
			for _, dl := range d {
				got = append(got, dl.Attempt)
				if dl.Redelivered != (dl.Attempt > 1) {
					t.Errorf("%s attempt %d: Redelivered %v", id, dl.Attempt, dl.Redelivered)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: attempts %v, want %v", id, got, want)
			}
		}
	})
}

// TestShareGroupBeyondPartitions: three share-group members on a
// one-partition topic all get work, and every message is accepted exactly
// once; three members of an ordinary consumer group on the same kind of
// topic leave two of them idle (the seed's "consumers <= partitions").
func TestShareGroupBeyondPartitions(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		const members, n = 3, 300
		run := func(t *testing.T, share bool) map[int]int {
			topic := uniqueTopic(t)
			p := newPublisher(t, brokers, kafka.WithTopicCreation(1, -1))
			group := "g-" + topic
			c := newCalls()
			var ready sync.WaitGroup
			// In share mode each member's first call waits until every
			// member has one: the three hold records of the one
			// partition at the same time.
			var first sync.WaitGroup
			all := make(chan struct{})
			if share {
				first.Add(members)
				go func() { first.Wait(); close(all) }()
			}
			for i := range members {
				var s *kafka.Subscriber
				if share {
					s = newShareSubscriber(t, brokers, group, kafka.WithTopicCreation(1, -1))
				} else {
					s = newSubscriber(t, brokers, kafka.WithGroup(group), kafka.WithTopicCreation(1, -1))
				}
				var once sync.Once
				ready.Add(1)
				var readyOnce sync.Once
				ctx := message.WithReady(context.Background(), func() { readyOnce.Do(ready.Done) })
				r := &running{done: make(chan error, 1)}
				ctx, r.cancel = context.WithCancel(ctx)
				go func() {
					r.done <- s.Subscribe(ctx, topic, func(ctx context.Context, m *message.Message) error {
						c.add(i, m)
						if share {
							once.Do(func() {
								first.Done()
								select {
								case <-all:
								case <-ctx.Done():
								}
							})
						}
						return nil
					})
				}()
				t.Cleanup(func() { r.stop(t) })
			}
			ready.Wait()
			ids := publishN(t, p, topic, "m", n)
			c.waitUntil(t, "every message handled", func(c *calls) bool { return len(c.byID) == n })
			for _, id := range ids {
				if d := c.deliveries(id); len(d) != 1 {
					t.Errorf("%s handled %d times, want once", id, len(d))
				}
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			return maps.Clone(c.byMember)
		}
		shared := run(t, true)
		ordinary := run(t, false)
		t.Logf("%d messages on a 1-partition topic, %d members: share group per member %v; consumer group per member %v", n, members, shared, ordinary)
		if len(shared) != members {
			t.Errorf("share group: %d of %d members handled messages (%v), want all", len(shared), members, shared)
		}
		if len(ordinary) != 1 {
			t.Errorf("consumer group: %d of %d members handled messages (%v), want 1 (the partition's owner)", len(ordinary), members, ordinary)
		}
	})
}

// TestShareGroupRenewsLocksOfLongHandlers: a handler that runs for three
// times the acquisition lock keeps its record (ferry renews the lock), so
// the other member of the group never gets it, and it is accepted once.
func TestShareGroupRenewsLocksOfLongHandlers(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		const lock = time.Second // the broker minimum services.sh allows
		topic := uniqueTopic(t)
		group := "renew-" + topic
		if strings.HasSuffix(t.Name(), "/kfake") {
			setBrokerConfig(t, brokers, "share.record.lock.sweep.interval.ms", "100")
			setBrokerConfig(t, brokers, "group.share.record.lock.duration.ms", strconv.Itoa(int(lock.Milliseconds())))
		} else {
			setGroupConfig(t, brokers, group, map[string]string{"share.record.lock.duration.ms": strconv.Itoa(int(lock.Milliseconds()))})
		}
		p := newPublisher(t, brokers, kafka.WithTopicCreation(1, -1))
		c := newCalls()
		long, longDone := make(chan struct{}), make(chan struct{})
		for i := range 2 {
			s := newShareSubscriber(t, brokers, group, kafka.WithTopicCreation(1, -1), kafka.WithConcurrency(2))
			startSubscribe(t, s, topic, func(ctx context.Context, m *message.Message) error {
				c.add(i, m)
				if m.ID == "long-0" {
					close(long)
					defer close(longDone)
					select {
					case <-time.After(3 * lock): // the handler's long work
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
		}
		publishN(t, p, topic, "long", 1)
		<-long
		// Work for the others meanwhile, and a marker after the long
		// handler returned: had its lock expired, the record would have
		// been delivered again to a member by then.
		publishN(t, p, topic, "short", 20)
		c.waitUntil(t, "the long handler and the short messages done", func(c *calls) bool { return len(c.byID) == 21 })
		select {
		case <-longDone:
		case <-time.After(testWait):
			t.Fatal("the long handler did not return")
		}
		publishN(t, p, topic, "marker", 1)
		c.waitUntil(t, "the marker handled", func(c *calls) bool { return len(c.byID["marker-0"]) > 0 })
		if d := c.deliveries("long-0"); len(d) != 1 {
			t.Errorf("the long-running message was delivered %d times (%+v), want once: its lock was not renewed", len(d), d)
		}
	})
}

func TestWithShareGroupRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "\xff"} {
		_, err := kafka.NewSubscriber([]string{"127.0.0.1:9092"}, kafka.WithShareGroup(name))
		if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithShareGroup") {
			t.Errorf("WithShareGroup(%q): %v, want ErrInvalidConfig naming WithShareGroup", name, err)
		}
	}
}

// TestShareGroupNeedsBrokerSupport: on a cluster without share groups
// (kfake speaking Kafka 3.9's API versions) Subscribe fails at once with
// ErrInvalidConfig saying so, instead of waiting for records.
func TestShareGroupNeedsBrokerSupport(t *testing.T) {
	brokers := newFake(t, kfake.MaxVersions(kversion.V3_9_0()))
	s := newShareSubscriber(t, brokers, "g")
	err := s.Subscribe(context.Background(), uniqueTopic(t), func(context.Context, *message.Message) error { return nil })
	if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "share group") {
		t.Fatalf("Subscribe: %v, want ErrInvalidConfig saying the broker has no share groups", err)
	}
}

// TestShareGroupStartLatest: WithStartOffset(StartLatest) makes a new
// share group skip what was published before it joined (the group config
// share.auto.offset.reset=latest); the default, earliest, is the
// conformance suite's "new group reads from the start".
func TestShareGroupStartLatest(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		topic := uniqueTopic(t)
		p := newPublisher(t, brokers, kafka.WithTopicCreation(1, -1))
		publishN(t, p, topic, "old", 5)
		c := newCalls()
		s := newShareSubscriber(t, brokers, "latest-"+topic, kafka.WithStartOffset(kafka.StartLatest))
		ready := make(chan struct{})
		var once sync.Once
		ctx, cancel := context.WithCancel(message.WithReady(context.Background(), func() { once.Do(func() { close(ready) }) }))
		done := make(chan error, 1)
		go func() {
			done <- s.Subscribe(ctx, topic, func(_ context.Context, m *message.Message) error { c.add(0, m); return nil })
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("Subscribe returned %v before it was ready", err)
		}
		// The share partition starts at the end when it is first
		// fetched, which may be just after ready: publish a new message
		// every 100 ms until one arrives.
		deadline := time.Now().Add(testWait)
		for i := 0; ; i++ {
			if err := p.Publish(context.Background(), topic, &message.Message{ID: "new-" + strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			got := c.total
			c.mu.Unlock()
			if got > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no message published after the group joined was handled within %v", testWait)
			}
			select {
			case <-c.changed:
			case <-time.After(100 * time.Millisecond): // polling the external condition
			}
		}
		for i := range 5 {
			if d := c.deliveries("old-" + strconv.Itoa(i)); len(d) > 0 {
				t.Errorf("old-%d, published before the group joined, was delivered with StartLatest", i)
			}
		}
	})
}

// TestShareGroupOnAConsumerGroupsName: a group ID is one kind of group;
// WithShareGroup on the name of an existing consumer group fails
// Subscribe with ErrInvalidConfig (the broker would hand the member no
// records and no error).
func TestShareGroupOnAConsumerGroupsName(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		topic := uniqueTopic(t)
		group := "kind-" + topic
		handleOne(t, brokers, newSubscriber(t, brokers, kafka.WithGroup(group)), topic)
		err := newShareSubscriber(t, brokers, group).Subscribe(context.Background(), topic, func(context.Context, *message.Message) error { return nil })
		if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "classic group") {
			t.Fatalf("Subscribe: %v, want ErrInvalidConfig naming the classic group", err)
		}
	})
}

// TestConsumerGroupOnAShareGroupsName: the reverse of
// TestShareGroupOnAConsumerGroupsName: WithGroup on the name of an
// existing share group fails Subscribe with ErrInvalidConfig naming it,
// instead of waiting for records that never come.
func TestConsumerGroupOnAShareGroupsName(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		topic := uniqueTopic(t)
		group := "kind-" + topic
		handleOne(t, brokers, newShareSubscriber(t, brokers, group), topic)
		// Bounded: without the check, Subscribe would wait for records
		// that never come and return nil when ctx ends.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := newSubscriber(t, brokers, kafka.WithGroup(group)).Subscribe(ctx, topic, func(context.Context, *message.Message) error { return nil })
		if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "share group") {
			t.Fatalf("Subscribe: %v, want ErrInvalidConfig naming the share group", err)
		}
	})
}

// handleOne publishes a message to topic and runs sub until it handled
// one, so that sub's group exists on the broker.
func handleOne(t *testing.T, brokers []string, sub *kafka.Subscriber, topic string) {
	t.Helper()
	publishN(t, newPublisher(t, brokers), topic, "m", 1)
	got := make(chan struct{}, 1)
	r := startSubscribe(t, sub, topic, func(context.Context, *message.Message) error {
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	})
	<-got
	r.stop(t)
}
