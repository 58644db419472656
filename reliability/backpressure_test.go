package reliability_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// pollCounter counts the records franz-go hands to ferry's poll loop and
// the records it buffers internally.
type pollCounter struct{ polled, buffered atomic.Int64 }

func (c *pollCounter) OnFetchRecordBuffered(*kgo.Record) { c.buffered.Add(1) }
func (c *pollCounter) OnFetchRecordUnbuffered(_ *kgo.Record, polled bool) {
	if polled {
		c.polled.Add(1)
	}
}

// TestSlowConsumerKafkaBackpressure publishes a 20 MiB backlog and consumes
// it with a handler that does not return: ferry must stop polling once
// WithMaxPending records are waiting (plus at most one poll's worth), so a
// slow consumer keeps memory bounded instead of pulling the backlog into
// the process. Then the handler is released and every message arrives.
func TestSlowConsumerKafkaBackpressure(t *testing.T) {
	const (
		total      = 20000
		maxPending = 100
		fetchBytes = 64 << 10
	)
	brokers := testenv.NeedKafka(t)
	topic := name("backpressure")
	ctx := context.Background()
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(rand.Uint32()) // incompressible: fetch sizes count compressed bytes
	}
	batch := make([]*message.Message, 0, 50) // one record batch each: a fetch returns whole batches
	for i := range total {
		batch = append(batch, &message.Message{Key: fmt.Sprint("k", i%50), Payload: payload})
		if len(batch) == cap(batch) {
			if err := pub.Publish(ctx, topic, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}

	counter := &pollCounter{}
	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup(topic+"_g"), kafka.WithConcurrency(1),
		kafka.WithMaxPending(maxPending),
		kafka.WithClientOptions(kgo.WithHooks(counter), kgo.FetchMaxBytes(fetchBytes), kgo.FetchMaxPartitionBytes(fetchBytes)))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var handled atomic.Int64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- sub.Subscribe(sctx, topic, func(ctx context.Context, m *message.Message) error {
			select {
			case started <- struct{}{}:
			default:
			}
			<-release
			handled.Add(1)
			return nil
		})
	}()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("Subscribe returned %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no message reached the handler")
	}
	// The dispatcher fills up; then polling must stop. Wait until the
	// polled count holds still for half a second, then check where it
	// stopped: a consumer without backpressure only stops when it has
	// pulled in the whole backlog.
	last, still := counter.polled.Load(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Since(still) < 500*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		if p := counter.polled.Load(); p != last {
			last, still = p, time.Now()
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("polling never stopped with a blocked handler (%d records polled so far)", last)
		}
	}
	if last > total/4 {
		close(release)
		t.Fatalf("polled %d of %d records with a blocked handler and WithMaxPending %d: no backpressure", last, total, maxPending)
	}
	polled, buffered := counter.polled.Load(), counter.buffered.Load()
	close(release)
	for deadline := time.Now().Add(120 * time.Second); handled.Load() < total; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the handler was released, %d of %d messages handled", handled.Load(), total)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("blocked handler: polling stopped after %d records polled (%d buffered by franz-go) of %d published; WithMaxPending %d", polled, buffered, total, maxPending)
}
