package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

// Run with a fixed message count, for example:
//
//	FERRY_REQUIRE_BROKERS=1 go test -run '^$' -bench 'Throughput' -benchtime 20000x ./outbox/
//	FERRY_REQUIRE_BROKERS=1 go test -run '^$' -bench 'Latency' -benchtime 100x ./outbox/

const benchShards = 8

// benchMessages returns n messages of size bytes over 100 keys.
func benchMessages(n, size int) []*message.Message {
	msgs := make([]*message.Message, n)
	payload := make([]byte, size)
	for i := range msgs {
		msgs[i] = &message.Message{Key: fmt.Sprintf("k%d", i%100), Payload: payload}
	}
	return msgs
}

// countingPub counts published messages and signals when target is
// reached.
type countingPub struct {
	message.Publisher
	n      atomic.Int64
	target int64
	done   chan struct{}
	once   sync.Once
}

func (p *countingPub) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(ctx, topic, msgs...)
	if err == nil && p.n.Add(int64(len(msgs))) >= p.target {
		p.once.Do(func() { close(p.done) })
	}
	return err
}

type benchBroker struct {
	name string
	pub  func(b *testing.B) (message.Publisher, string) // publisher and a fresh topic
}

func benchBrokers() []benchBroker {
	return []benchBroker{
		{"Kafka", func(b *testing.B) (message.Publisher, string) {
			brokers := testenv.NeedKafka(b)
			topic := fmt.Sprintf("outbox-bench-%d-%06d", time.Now().UnixMilli()%1e9, rand.IntN(1e6))
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
			if err != nil {
				b.Fatal(err)
			}
			adm := kadm.NewClient(cl)
			if _, err := adm.CreateTopic(context.Background(), benchShards, -1, nil, topic); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topic); cl.Close() })
			p, err := kafka.NewPublisher(brokers, kafka.WithClientOptions(kgo.MaxBufferedRecords(100_000)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			// Warm up: the new topic's metadata, the producer ID. A
			// topic just created may not be served yet.
			for deadline := time.Now().Add(time.Minute); ; {
				err := p.Publish(context.Background(), topic, &message.Message{Key: "warm"})
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond) // waiting for the new topic's leader
			}
			return p, topic
		}},
		{"RabbitMQ", func(b *testing.B) (message.Publisher, string) {
			url := testenv.NeedAMQP(b)
			p, err := amqp.NewPublisher(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			// No queue is bound: mandatory publishes of unroutable
			// messages would fail, so declare one that expires.
			topic := fmt.Sprintf("outbox.bench.%08x", rand.Uint32())
			s, err := amqp.NewSubscriber(url, amqp.WithGroup("bench"), amqp.WithQueueArgs(map[string]any{"x-expires": int32(60_000)}))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			if err := s.Declare(context.Background(), topic); err != nil {
				b.Fatal(err)
			}
			if err := p.Publish(context.Background(), topic, &message.Message{Key: "warm"}); err != nil {
				b.Fatal(err)
			}
			return p, topic
		}},
	}
}

// BenchmarkThroughput: the relay publishing b.N committed rows from
// PostgreSQL, against Publish of the same messages in the relay's batch
// size from as many goroutines as the relay has shards.
func BenchmarkThroughput(b *testing.B) {
	for _, bb := range benchBrokers() {
		for _, size := range []int{100, 1024} {
			for _, batch := range []int{outbox.DefaultBatchSize, 2000} {
				name := fmt.Sprintf("%s/%dB/batch-%d", bb.name, size, batch)
				benchThroughput(b, bb, name, size, batch)
			}
		}
	}
}

func benchThroughput(b *testing.B, bb benchBroker, name string, size, benchBatch int) {
	{
		b.Run(name+"/bare-publish", func(b *testing.B) {
			pub, topic := bb.pub(b)
			msgs := benchMessages(b.N, size)
			b.ResetTimer()
			var wg sync.WaitGroup
			chunks := slices.Collect(slices.Chunk(msgs, benchBatch))
			var next atomic.Int64
			cpu := readCPU(nil)
			for range benchShards {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= len(chunks) {
							return
						}
						if err := pub.Publish(context.Background(), topic, chunks[i]...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			reportCPU(b, nil, cpu, b.N)
		})
		b.Run(name+"/relay", func(b *testing.B) {
			pub, topic := bb.pub(b)
			db := openPostgres(b)
			ob := newOutbox(b, db, outbox.WithShards(benchShards))
			ctx := context.Background()
			msgs := benchMessages(b.N, size)
			for chunk := range slices.Chunk(msgs, 5000) {
				write(b, db, ob, topic, chunk...)
			}
			cp := &countingPub{Publisher: pub, target: int64(b.N), done: make(chan struct{})}
			r, err := outbox.NewRelay(ob, cp, outbox.WithRebalanceInterval(10*time.Millisecond), outbox.WithBatchSize(benchBatch))
			if err != nil {
				b.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			b.ResetTimer()
			cpu, pool := readCPU(db), db.Stats()
			go func() { errc <- r.Run(rctx) }()
			<-cp.done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			reportCPU(b, db, cpu, b.N)
			// Connections the pool closed for want of idle room (and
			// opened again): database/sql keeps 2 idle by default.
			b.ReportMetric(float64(db.Stats().MaxIdleClosed-pool.MaxIdleClosed), "conns-closed")
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// timedPub reports each message's publish completion.
type timedPub struct {
	message.Publisher
	out chan string
}

func (p *timedPub) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(ctx, topic, msgs...)
	if err == nil {
		for _, m := range msgs {
			p.out <- m.ID
		}
	}
	return err
}

// BenchmarkLatency: from Commit returning to Publish to Kafka returning,
// one message at a time, woken by NOTIFY or found by polling (the
// default 500 ms interval, and 50 ms).
func BenchmarkLatency(b *testing.B) {
	cases := []struct {
		name   string
		notify bool
		poll   time.Duration
	}{
		{"notify", true, outbox.DefaultPollIntervalPostgres},
		{"poll-500ms", false, outbox.DefaultPollIntervalPostgres},
		{"poll-50ms", false, 50 * time.Millisecond},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			pub, topic := benchBrokers()[0].pub(b)
			db := openPostgres(b)
			opts := []outbox.Option{}
			if !c.notify {
				opts = append(opts, outbox.WithoutNotify())
			}
			ob := newOutbox(b, db, opts...)
			tp := &timedPub{Publisher: pub, out: make(chan string, 16)}
			r, err := outbox.NewRelay(ob, tp, outbox.WithPollInterval(c.poll), outbox.WithRebalanceInterval(10*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx) }()
			for r.Stats().OwnedShards < ob.Shards() || (c.notify && !r.Stats().Listening) {
				time.Sleep(time.Millisecond) // waiting for the relay to start
			}
			// Warm up the producer.
			write(b, db, ob, topic, &message.Message{Key: "warm"})
			<-tp.out
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				m := &message.Message{Key: fmt.Sprintf("k%d", i)}
				write(b, db, ob, topic, m)
				t0 := time.Now()
				for id := range tp.out {
					if id == m.ID {
						break
					}
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}
