package reliability_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// soakFor is the soak length per adapter: 40 s with FERRY_SOAK=1 (two
// minutes for the three adapters), 3 s otherwise.
func soakFor() time.Duration {
	if os.Getenv("FERRY_SOAK") == "1" {
		return 40 * time.Second
	}
	return 3 * time.Second
}

const (
	soakPublishers = 16
	soakMembers    = 4 // subscribers in the group, each with concurrency 4: 16 handlers
	soakMaxPer     = 1 << 20
)

// heap returns the live heap after a GC.
func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// soakTarget builds one adapter's publisher and group members.
type soakTarget struct {
	name    string
	every   time.Duration // each publisher publishes one message per tick
	pub     message.Publisher
	members func() []message.Subscriber
	topic   string
}

func runSoak(t *testing.T, st soakTarget) {
	d := soakFor()
	seen := make([]atomic.Uint32, soakPublishers*soakMaxPer/32) // a bit per message, allocated up front
	var acked, pubErrs, delivered, dups atomic.Int64
	h := func(_ context.Context, m *message.Message) error {
		var g, i int
		if _, err := fmt.Sscanf(m.ID, "s-%d-%d", &g, &i); err != nil {
			return fmt.Errorf("foreign id %q", m.ID)
		}
		bit := g*soakMaxPer + i
		w, mask := &seen[bit/32], uint32(1)<<(bit%32)
		if w.Or(mask)&mask != 0 {
			dups.Add(1)
		}
		delivered.Add(1)
		return nil
	}
	goroutines0 := runtime.NumGoroutine()
	ctx := context.Background()
	var sbs []*subscription
	members := st.members()
	for _, s := range members {
		sbs = append(sbs, subscribe(ctx, s, st.topic, h))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range soakPublishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(st.every)
			defer tick.Stop()
			for i := 0; i < soakMaxPer; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				m := &message.Message{ID: fmt.Sprintf("s-%d-%d", g, i), Key: fmt.Sprint(i % 64), Payload: make([]byte, 256)}
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := st.pub.Publish(pctx, st.topic, m)
				cancel()
				if err != nil {
					pubErrs.Add(1)
				} else {
					acked.Add(1)
				}
			}
		}()
	}
	// Thirds: the first is warm-up and the baseline of throughput; heap
	// and goroutines are sampled at its end and at the end of the run.
	third := time.NewTimer(d / 3)
	<-third.C
	heap1, gor1, got1 := heap(), runtime.NumGoroutine(), delivered.Load()
	third.Reset(d / 3)
	<-third.C
	got2 := delivered.Load()
	third.Reset(d / 3)
	<-third.C
	heap3, gor3, got3 := heap(), runtime.NumGoroutine(), delivered.Load()
	close(stop)
	wg.Wait()

	l := newLedger()
	l.waitUntil(2*time.Minute, func() bool { return delivered.Load()-dups.Load() >= acked.Load() })
	for _, sb := range sbs {
		sb.running(t)
		sb.stop(t)
	}
	st.pub.Close()
	for _, s := range members {
		s.Close()
	}
	// Everything closed: goroutines return to where they were.
	var gorEnd int
	l.waitUntil(30*time.Second, func() bool { gorEnd = runtime.NumGoroutine(); return gorEnd <= goroutines0+2 })

	first, last := float64(got1), float64(got3-got2)
	ratio := last / first
	r := result{Fault: "soak", Adapter: st.name,
		Injection: fmt.Sprintf("%v: %d publishers (one message per %v each), %d members × concurrency 4", d, soakPublishers, st.every, soakMembers),
		Sent:      int(acked.Load() + pubErrs.Load()), Acked: int(acked.Load()), PubErrors: int(pubErrs.Load()),
		Received: int(delivered.Load() - dups.Load()), Duplicated: int(dups.Load()),
		Extra: fmt.Sprintf("throughput_last/first_third=%.2f heap_MiB=%.1f->%.1f goroutines=%d->%d after_close=%d(before %d)",
			ratio, float64(heap1)/(1<<20), float64(heap3)/(1<<20), gor1, gor3, gorEnd, goroutines0)}
	r.Lost = max(0, r.Acked-r.Received)
	var lost []string
	if r.Lost > 0 {
		lost = []string{fmt.Sprintf("%d messages", r.Lost)}
	}
	report(t, r, lost)
	if ratio < 0.5 {
		t.Errorf("throughput fell: last third delivered %.0f, first %.0f (ratio %.2f, want >= 0.5)", last, first, ratio)
	}
	if heap3 > 2*heap1+16<<20 {
		t.Errorf("heap grew from %d to %d bytes during the soak", heap1, heap3)
	}
	if gor3 > gor1+gor1/10+8 {
		t.Errorf("goroutines grew from %d to %d during the soak", gor1, gor3)
	}
	if gorEnd > goroutines0+2 {
		t.Errorf("%d goroutines after closing everything, %d before starting", gorEnd, goroutines0)
	}
}

func TestSoakInmem(t *testing.T) {
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}
	runSoak(t, soakTarget{name: "inmem", every: time.Millisecond, pub: pub, topic: "soak",
		members: func() []message.Subscriber {
			var out []message.Subscriber
			for range soakMembers {
				s, err := inmem.NewSubscriber(b, inmem.WithGroup("g"), inmem.WithConcurrency(4))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				out = append(out, s)
			}
			return out
		}})
}

func TestSoakKafka(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	topic := name("rel_soak")
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(8, -1), kafka.WithClientOptions(kgo.ProducerLinger(time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	deleteKafkaTopics(t, pub, topic)
	if err := pub.Publish(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	runSoak(t, soakTarget{name: "kafka", every: 5 * time.Millisecond, pub: pub, topic: topic,
		members: func() []message.Subscriber {
			var out []message.Subscriber
			for range soakMembers {
				s, err := kafka.NewSubscriber(brokers, kafka.WithGroup(topic+"_g"), kafka.WithConcurrency(4), fastGroup())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				out = append(out, s)
			}
			return out
		}})
}

func TestSoakAMQP(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := name("rel_soak")
	deleteAMQP(t, url, topic, topic+".g")
	pub, err := amqp.NewPublisher(url, amqp.WithPublishChannels(4))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Declare(context.Background(), topic, "g"); err != nil {
		t.Fatal(err)
	}
	runSoak(t, soakTarget{name: "amqp", every: 10 * time.Millisecond, pub: pub, topic: topic,
		members: func() []message.Subscriber {
			var out []message.Subscriber
			for range soakMembers {
				s, err := amqp.NewSubscriber(url, amqp.WithGroup("g"), amqp.WithConcurrency(4))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				out = append(out, s)
			}
			return out
		}})
}
