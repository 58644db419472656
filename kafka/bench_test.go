package kafka_test

// Throughput of the adapter against raw franz-go on the real broker, in one
// run, side by side. Run with, for example:
//
//	go test -run '^$' -bench 'Kafka' -benchtime 1000000x -count 3 ./kafka/
//
// Each benchmark reports msgs/s; the ratio ferry/raw is the figure that
// matters (target ≥ 0.9). Sub-benchmarks alternate ferry and raw so that
// drift of the shared machine hits both.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

const (
	benchPartitions = 8
	benchWorkers    = 16  // publishing goroutines
	benchBatch      = 100 // messages per Publish call / per raw wait
)

var benchSizes = []int{100, 1024}

// benchClientOpts are the franz-go settings both sides share.
func benchClientOpts() []kgo.Opt {
	return []kgo.Opt{kgo.MaxBufferedRecords(1 << 20), kgo.ProducerBatchMaxBytes(1 << 20)}
}

func benchTopic(b *testing.B, adm *kadm.Client, name string) string {
	b.Helper()
	topic := fmt.Sprintf("bench-%s-%d", name, time.Now().UnixNano())
	if _, err := adm.CreateTopic(context.Background(), benchPartitions, 1, nil, topic); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { adm.DeleteTopics(context.Background(), topic) })
	return topic
}

func BenchmarkKafkaPublish(b *testing.B) {
	brokers := testenv.NeedKafka(b)
	for _, size := range benchSizes {
		payload := make([]byte, size)
		b.Run(fmt.Sprintf("size=%d/ferry", size), func(b *testing.B) {
			p, err := kafka.NewPublisher(brokers, kafka.WithClientOptions(benchClientOpts()...))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			topic := benchTopic(b, kadm.NewClient(p.Client()), "pub")
			ctx := context.Background()
			runWorkers(b, func(n int) error {
				msgs := make([]*message.Message, n)
				for i := range msgs {
					msgs[i] = &message.Message{Key: fmt.Sprint(i), Payload: payload}
				}
				return p.Publish(ctx, topic, msgs...)
			})
		})
		b.Run(fmt.Sprintf("size=%d/raw", size), func(b *testing.B) {
			cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, benchClientOpts()...)...)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			topic := benchTopic(b, kadm.NewClient(cl), "pub")
			ctx := context.Background()
			runWorkers(b, func(n int) error {
				var (
					wg    sync.WaitGroup
					mu    sync.Mutex
					first error
				)
				wg.Add(n)
				for i := range n {
					r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: payload}
					cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
						if err != nil {
							mu.Lock()
							first = err
							mu.Unlock()
						}
						wg.Done()
					})
				}
				wg.Wait()
				return first
			})
		})
	}
}

// runWorkers publishes b.N messages in batches of benchBatch from
// benchWorkers goroutines and reports msgs/s.
func runWorkers(b *testing.B, publish func(n int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchWorkers)
	b.ResetTimer()
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				end := next.Add(benchBatch)
				n := benchBatch
				if end > int64(b.N) {
					n -= int(end - int64(b.N))
				}
				if n <= 0 {
					return
				}
				if err := publish(n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// filled is a topic holding at least n records of one size, shared by the
// consume benchmarks (each run reads it with a fresh group).
type filled struct {
	topic string
	n     int
}

var fills = map[int]*filled{}

func fillTopic(b *testing.B, brokers []string, size, n int) string {
	b.Helper()
	if f := fills[size]; f != nil && f.n >= n {
		return f.topic
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, benchClientOpts()...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	topic := fmt.Sprintf("bench-consume-%d-%d", size, time.Now().UnixNano())
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), benchPartitions, 1, nil, topic); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	var failed atomic.Value
	for i := range n {
		// A ferry-id header as the adapter would write, so both sides read
		// the same records.
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: payload,
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderID, Value: []byte(message.NewID())}}}
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if old := fills[size]; old != nil {
		kadm.NewClient(cl).DeleteTopics(context.Background(), old.topic)
	}
	fills[size] = &filled{topic: topic, n: n}
	return topic
}

func BenchmarkKafkaConsume(b *testing.B) {
	brokers := testenv.NeedKafka(b)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d/ferry", size), func(b *testing.B) {
			topic := fillTopic(b, brokers, size, b.N)
			group := fmt.Sprintf("bench-ferry-%d", time.Now().UnixNano())
			s, err := kafka.NewSubscriber(brokers, kafka.WithGroup(group), kafka.WithClientOptions(benchClientOpts()...))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var seen atomic.Int64
			done := make(chan struct{})
			b.ResetTimer()
			go func() {
				<-done
				cancel()
			}()
			err = s.Subscribe(ctx, topic, func(context.Context, *message.Message) error {
				if seen.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(fmt.Sprintf("size=%d/raw", size), func(b *testing.B) {
			topic := fillTopic(b, brokers, size, b.N)
			group := fmt.Sprintf("bench-raw-%d", time.Now().UnixNano())
			b.ResetTimer()
			cl, err := kgo.NewClient(append([]kgo.Opt{
				kgo.SeedBrokers(brokers...),
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(topic),
				kgo.Balancers(kgo.CooperativeStickyBalancer()),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.AutoCommitMarks(),
			}, benchClientOpts()...)...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var seen int
			handle := func(*kgo.Record) {}
			for seen < b.N {
				fs := cl.PollFetches(ctx)
				if err := fs.Err0(); err != nil {
					b.Fatal(err)
				}
				fs.EachRecord(func(r *kgo.Record) {
					handle(r)
					seen++
				})
				cl.MarkCommitRecords(fs.Records()...)
			}
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				b.Fatal(err)
			}
			cl.Close()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
