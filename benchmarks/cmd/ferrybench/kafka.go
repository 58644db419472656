package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wmmsg "github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// kafkaSystem: ferry's kafka adapter, raw franz-go with the same client
// settings (acks=all, idempotent producer, default linger and batching;
// consumer group with cooperative-sticky balancing and mark-based
// autocommit every second), and watermill-kafka on Sarama (acks=all).
type kafkaSystem struct {
	brokers []string
	cl      *kgo.Client
	adm     *kadm.Client
	run     int64
	seq     atomic.Int64

	mu       sync.Mutex
	backlogs map[[2]int]string // (n, size) -> topic
	topics   []string
}

const kafkaPartitions = 8

func newKafkaSystem(brokers []string) (*kafkaSystem, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	s := &kafkaSystem{brokers: brokers, cl: cl, adm: kadm.NewClient(cl), run: time.Now().Unix(), backlogs: map[[2]int]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.adm.ListBrokers(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka at %v unreachable (run scripts/services.sh up): %w", brokers, err)
	}
	return s, nil
}

func (*kafkaSystem) name() string       { return "kafka" }
func (*kafkaSystem) service() string    { return "kafka" }
func (*kafkaSystem) variants() []string { return []string{"ferry", vFerryBatch, "raw", "watermill"} }

func (s *kafkaSystem) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	ts := s.topics
	s.mu.Unlock()
	if len(ts) > 0 {
		_, _ = s.adm.DeleteTopics(ctx, ts...)
	}
	s.cl.Close()
}

func (s *kafkaSystem) newTopic(ctx context.Context) (string, error) {
	t := fmt.Sprintf("fb-%d-%d", s.run, s.seq.Add(1))
	resp, err := s.adm.CreateTopic(ctx, kafkaPartitions, 1, nil, t)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return "", fmt.Errorf("create topic %s: %w", t, err)
	}
	s.mu.Lock()
	s.topics = append(s.topics, t)
	s.mu.Unlock()
	// Wait until the metadata shows every partition with a leader: a
	// topic is not usable everywhere the moment CreateTopics returns.
	for {
		d, err := s.adm.ListTopics(ctx, t)
		if err == nil {
			if td, ok := d[t]; ok && td.Err == nil && len(td.Partitions) == kafkaPartitions {
				ready := true
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return t, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("topic %s not ready: %w", t, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *kafkaSystem) deleteTopic(t string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = s.adm.DeleteTopics(ctx, t)
	s.mu.Lock()
	for i, x := range s.topics {
		if x == t {
			s.topics = append(s.topics[:i], s.topics[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
}

func (s *kafkaSystem) group() string { return fmt.Sprintf("fb-g-%d-%d", s.run, s.seq.Add(1)) }

// backlog returns a topic holding messages 0..n-1 of the given size,
// produced once with franz-go and read by every consume cell through a new
// consumer group.
func (s *kafkaSystem) backlog(ctx context.Context, n, size int) (string, error) {
	s.mu.Lock()
	t, ok := s.backlogs[[2]int{n, size}]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := s.newTopic(ctx)
	if err != nil {
		return "", err
	}
	ps := getPayloads(n, size).data
	err = batches(n, 10_000, func(lo, hi int) error {
		recs := make([]*kgo.Record, 0, hi-lo)
		for _, p := range ps[lo:hi] {
			recs = append(recs, &kgo.Record{Topic: t, Value: p})
		}
		return s.cl.ProduceSync(ctx, recs...).FirstErr()
	})
	if err != nil {
		return "", fmt.Errorf("fill backlog: %w", err)
	}
	s.mu.Lock()
	s.backlogs[[2]int{n, size}] = t
	s.mu.Unlock()
	return t, nil
}

// stored returns the number of records in topic.
func (s *kafkaSystem) stored(ctx context.Context, t string) (int64, error) {
	ends, err := s.adm.ListEndOffsets(ctx, t)
	if err != nil {
		return 0, err
	}
	starts, err := s.adm.ListStartOffsets(ctx, t)
	if err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	starts.Each(func(o kadm.ListedOffset) { n -= o.Offset })
	return n, nil
}

// kafkaClient is what a variant needs: a publish of a batch, a publish of
// one message, and a consumer.
type kafkaVariant struct {
	publish  func(ctx context.Context, topic string, ps [][]byte) error
	consume  func(ctx context.Context, topic, group string, chk *checker, concurrency int) error
	closeFns []func()
}

func (s *kafkaSystem) cell(w workload, size int, v string, n int) (*cell, error) {
	var kv *kafkaVariant
	var err error
	switch v {
	case "ferry":
		kv, err = s.ferry()
	case vFerryBatch:
		kv, err = s.ferryBatch()
	case "raw":
		kv, err = s.raw()
	case "watermill":
		kv, err = s.watermill()
	default:
		return nil, errUnknown(w, v)
	}
	if err != nil {
		return nil, err
	}
	var topic string
	c := &cell{n: n}
	c.close = func() {
		for _, f := range kv.closeFns {
			f()
		}
		if topic != "" && !isConsume(w) {
			s.deleteTopic(topic)
		}
	}
	ps := getPayloads(n, size).data
	one := func(ctx context.Context, p []byte) error { return kv.publish(ctx, topic, [][]byte{p}) }
	pubSetup := func(ctx context.Context) error {
		var err error
		if topic, err = s.newTopic(ctx); err != nil {
			return err
		}
		return one(ctx, warmPayload(size)) // connect and fetch metadata, untimed
	}
	pubVerify := func(ctx context.Context) error {
		got, err := s.stored(ctx, topic)
		if err != nil {
			return err
		}
		if want := int64(n + 1); got != want {
			return fmt.Errorf("topic %s holds %d records, want %d (n + 1 warm-up)", topic, got, want)
		}
		return nil
	}
	switch w {
	case wPubBatch:
		c.setup = pubSetup
		c.run = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error { return kv.publish(ctx, topic, ps[lo:hi]) })
		}
		c.verify = pubVerify
	case wPub64:
		c.setup = pubSetup
		c.run = func(ctx context.Context) error {
			return parallel(ctx, n, 64, func(ctx context.Context, i int) error { return one(ctx, ps[i]) })
		}
		c.verify = pubVerify
	case wCons1, wCons16:
		c.setup = func(ctx context.Context) error {
			var err error
			topic, err = s.backlog(ctx, n, size)
			return err
		}
		c.chk = newChecker(n, size)
		c.run = func(ctx context.Context) error {
			return kv.consume(ctx, topic, s.group(), c.chk, conc(w))
		}
	case wLatency:
		c.chk = newLatencyChecker(n, size)
		group := s.group()
		latencyCell(c, size, func(ctx context.Context, chk *checker) error {
			return kv.consume(ctx, topic, group, chk, 1)
		}, one)
		setup := c.setup
		c.setup = func(ctx context.Context) error {
			var err error
			if topic, err = s.newTopic(ctx); err != nil {
				return err
			}
			return setup(ctx)
		}
		closeFn := c.close
		c.close = func() { closeFn(); s.deleteTopic(topic) }
	}
	return c, nil
}

func (s *kafkaSystem) ferry() (*kafkaVariant, error) {
	pub, err := kafka.NewPublisher(s.brokers, kafka.WithoutTopicCreation())
	if err != nil {
		return nil, err
	}
	return &kafkaVariant{
		publish: func(ctx context.Context, topic string, ps [][]byte) error {
			return pub.Publish(ctx, topic, ferryMsgs(ps)...)
		},
		consume: func(ctx context.Context, topic, group string, chk *checker, concurrency int) error {
			sub, err := kafka.NewSubscriber(s.brokers, kafka.WithGroup(group), kafka.WithConcurrency(concurrency), kafka.WithoutTopicCreation())
			if err != nil {
				return err
			}
			defer sub.Close()
			return runUntil(ctx, chk, func(ctx context.Context) error {
				return sub.Subscribe(ctx, topic, func(_ context.Context, m *message.Message) error {
					chk.got(m.Payload)
					return nil
				})
			})
		},
		closeFns: []func(){func() { _ = pub.Close() }},
	}, nil
}

func (s *kafkaSystem) raw() (*kafkaVariant, error) {
	pub, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return nil, err
	}
	return &kafkaVariant{
		publish: func(ctx context.Context, topic string, ps [][]byte) error {
			recs := make([]*kgo.Record, len(ps))
			for i, p := range ps {
				recs[i] = &kgo.Record{Topic: topic, Value: p}
				if cfg.rawProps {
					// What ferry sends besides the payload: a UUID in
					// the ferry-id header and the message time.
					recs[i].Headers = []kgo.RecordHeader{{Key: kafka.HeaderID, Value: []byte(message.NewID())}}
					recs[i].Timestamp = time.Now()
				}
			}
			return pub.ProduceSync(ctx, recs...).FirstErr()
		},
		consume: func(ctx context.Context, topic, group string, chk *checker, concurrency int) error {
			cl, err := kgo.NewClient(
				kgo.SeedBrokers(s.brokers...),
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(topic),
				kgo.Balancers(kgo.CooperativeStickyBalancer()),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.AutoCommitMarks(),
				kgo.AutoCommitInterval(time.Second),
			)
			if err != nil {
				return err
			}
			defer cl.Close()
			err = runUntil(ctx, chk, func(ctx context.Context) error {
				for {
					fs := cl.PollFetches(ctx)
					if ctx.Err() != nil {
						return nil
					}
					if err := fs.Err0(); err != nil {
						return err
					}
					if concurrency == 1 {
						fs.EachRecord(func(r *kgo.Record) {
							chk.got(r.Value)
							cl.MarkCommitRecords(r)
						})
						continue
					}
					// One goroutine per partition of the fetch: the
					// usual franz-go pattern for parallelism that keeps
					// per-partition order and contiguous marks.
					var wg sync.WaitGroup
					fs.EachPartition(func(p kgo.FetchTopicPartition) {
						wg.Go(func() {
							for _, r := range p.Records {
								chk.got(r.Value)
								cl.MarkCommitRecords(r)
							}
						})
					})
					wg.Wait()
				}
			})
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = cl.CommitMarkedOffsets(cctx)
			return err
		},
		closeFns: []func(){pub.Close},
	}, nil
}

func (s *kafkaSystem) watermill() (*kafkaVariant, error) {
	pc := wmkafka.DefaultSaramaSyncPublisherConfig()
	pc.Version = sarama.V3_6_0_0
	pc.Producer.RequiredAcks = sarama.WaitForAll // the same guarantee as ferry's acks=all
	pub, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers:               s.brokers,
		Marshaler:             wmkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: pc,
	}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	return &kafkaVariant{
		publish: func(_ context.Context, topic string, ps [][]byte) error {
			return pub.Publish(topic, wmMsgs(ps)...)
		},
		consume: func(ctx context.Context, topic, group string, chk *checker, concurrency int) error {
			sc := wmkafka.DefaultSaramaSubscriberConfig()
			sc.Version = sarama.V3_6_0_0
			sc.Consumer.Offsets.Initial = sarama.OffsetOldest
			sub, err := wmkafka.NewSubscriber(wmkafka.SubscriberConfig{
				Brokers:               s.brokers,
				Unmarshaler:           wmkafka.DefaultMarshaler{},
				OverwriteSaramaConfig: sc,
				ConsumerGroup:         group,
			}, watermill.NopLogger{})
			if err != nil {
				return err
			}
			defer sub.Close()
			return wmConsume(ctx, chk, concurrency, func(ctx context.Context) (<-chan *wmmsg.Message, error) {
				return sub.Subscribe(ctx, topic)
			})
		},
		closeFns: []func(){func() { _ = pub.Close() }},
	}, nil
}
