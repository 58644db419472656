package kafka_test

// Consume throughput of a share group against an ordinary consumer group
// on the real broker, side by side in one run: 1 and 12 partitions, 1 to
// 4 members of concurrency 1, a no-op handler and one that works 1 ms;
// share groups with the default records per poll (16 per worker) and with
// 512 (WithMaxPending).
//
//	go test -run '^$' -bench 'KafkaShareVsGroup' -benchtime 20000x ./kafka/
//	go test -run '^$' -bench 'KafkaShareVsGroupWork' -benchtime 2000x ./kafka/
//
// Each cell starts its members on a fresh topic, waits until every one is
// ready (message.WithReady), then publishes b.N messages of 100 B with
// distinct keys and stops the clock when the last one was handled.

import (
	"context"
	"fmt"
	"strconv"
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

func BenchmarkKafkaShareVsGroup(b *testing.B) { benchShareVsGroup(b, 0) }

func BenchmarkKafkaShareVsGroupWork(b *testing.B) { benchShareVsGroup(b, time.Millisecond) }

func benchShareVsGroup(b *testing.B, work time.Duration) {
	brokers := testenv.NeedKafka(b)
	for _, parts := range []int32{1, 12} {
		for members := 1; members <= 4; members++ {
			for _, mode := range []struct {
				name    string
				share   bool
				perPoll int // WithMaxPending; 0: the default
			}{{"group", false, 0}, {"share", true, 0}, {"share-512", true, 512}, {"raw-share-32", true, -32}, {"raw-share-512", true, -512}} {
				b.Run(fmt.Sprintf("partitions=%d/members=%d/%s", parts, members, mode.name), func(b *testing.B) {
					benchConsumeMembers(b, brokers, parts, members, mode.share, mode.perPoll, work)
				})
			}
		}
	}
}

func benchConsumeMembers(b *testing.B, brokers []string, parts int32, members int, share bool, perPoll int, work time.Duration) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5 * time.Millisecond)}, benchClientOpts()...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := fmt.Sprintf("bench-share-%d", time.Now().UnixNano())
	if _, err := adm.CreateTopic(context.Background(), parts, 1, nil, topic); err != nil {
		b.Fatal(err)
	}
	defer adm.DeleteTopics(context.Background(), topic)
	group := "bench-" + topic

	var handled atomic.Int64
	all := make(chan struct{})
	per := make([]atomic.Int64, members)
	ctx, cancel := context.WithCancel(context.Background())
	var wg, ready sync.WaitGroup
	if perPoll < 0 {
		// Raw franz-go share consumers, the baseline: one client per
		// member polling -perPoll records (strict), handling them one at a
		// time and accepting each; the group config set as ferry sets it.
		setGroupConfig(b, brokers, group, map[string]string{"share.auto.offset.reset": "earliest"})
		for i := range members {
			rc, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
				kgo.ShareMaxRecords(int32(-perPoll)), kgo.ShareMaxRecordsStrict(), kgo.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			defer rc.Close()
			wg.Go(func() {
				for ctx.Err() == nil {
					for _, r := range rc.PollRecords(ctx, -perPoll).Records() {
						if work > 0 {
							time.Sleep(work)
						}
						r.Ack(kgo.AckAccept)
						per[i].Add(1)
						if handled.Add(1) == int64(b.N) {
							close(all)
						}
					}
				}
			})
		}
		// Raw members have no ready signal: wait until all of them show
		// in the group with the topic assigned, as ferry's does.
		for {
			gs, err := adm.DescribeShareGroups(context.Background(), group)
			joined := 0
			if err == nil {
				for _, m := range gs[group].Members {
					if len(m.Assignment[topic]) > 0 {
						joined++
					}
				}
			}
			if joined >= members {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling the group's description
		}
	}
	for i := range members {
		if perPoll < 0 {
			break
		}
		opt := kafka.WithGroup(group)
		if share {
			opt = kafka.WithShareGroup(group)
		}
		opts := []kafka.SubscriberOption{opt, kafka.WithClientOptions(kgo.FetchMaxWait(100 * time.Millisecond))}
		if perPoll > 0 {
			opts = append(opts, kafka.WithMaxPending(perPoll))
		}
		s, err := kafka.NewSubscriber(brokers, opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ready.Add(1)
		var once sync.Once
		rctx := message.WithReady(ctx, func() { once.Do(ready.Done) })
		wg.Go(func() {
			_ = s.Subscribe(rctx, topic, func(context.Context, *message.Message) error {
				if work > 0 {
					time.Sleep(work) // the handler's work, not synchronisation
				}
				per[i].Add(1)
				if handled.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			})
		})
	}
	ready.Wait()
	payload := make([]byte, 100)
	b.ResetTimer()
	for i := range b.N {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: payload,
			Headers: []kgo.RecordHeader{{Key: kafka.HeaderID, Value: []byte(strconv.Itoa(i))}}}, nil)
	}
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
		b.Fatalf("%d of %d handled after 10 minutes", handled.Load(), b.N)
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	busy := 0
	for i := range per {
		if per[i].Load() > 0 {
			busy++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(busy), "busy-members")
}
