package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

// TestBrokerOutage makes the real RabbitMQ unreachable for the relay (a
// TCP proxy cuts its connections and refuses new ones) while writers
// commit and the relay publishes, until the relay has seen Publish fail:
// the relay retries with backoff, and every committed message reaches the
// consumer, per-key order kept. (A real broker restart would need the
// exclusive service lock, which waits for every other package's test
// process using RabbitMQ; the restarts of the broker itself are tested in
// amqp/ and reliability/.)
func TestBrokerOutage(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	db := openPostgres(t)
	ctx := context.Background()
	ob := newOutbox(t, db, outbox.WithShards(2))
	topic := fmt.Sprintf("outbox.outage.%08x", rand.Uint32())
	expire := amqp.WithQueueArgs(amqp091.Table{"x-expires": int32(120_000)})
	fast := amqp.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond)
	pub, err := amqp.NewPublisher(purl, fast, expire, amqp.WithDeclareGroups("g"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := amqp.NewSubscriber(url, fast, expire, amqp.WithGroup("g"), amqp.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	log := newLog()
	rec := &recorder{log: log}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subDone := make(chan error, 1)
	go func() {
		subDone <- sub.Subscribe(sctx, topic, func(ctx context.Context, m *message.Message) error {
			return rec.Publish(ctx, topic, m)
		})
	}()
	relay := newRelay(t, ob, pub, outbox.WithBatchSize(20), outbox.WithPublishTimeout(5*time.Second))
	stopRelay := startRelay(t, relay)

	var mu sync.Mutex
	var written []string
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			msgs := numbered(fmt.Sprintf("k%d", i%4), i/4, 1)
			write(t, db, ob, topic, msgs...)
			mu.Lock()
			written = append(written, msgs[0].ID)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond) // pacing the writer, not synchronisation
		}
	}()
	log.waitFor(t, "50 deliveries before the outage", func(ps []published) bool { return len(ps) >= 50 })
	began := time.Now()
	failures := relay.Stats().Failures
	px.Down()
	waitRelay(t, relay, "a failed Publish during the outage", func(s outbox.Stats) bool { return s.Failures > failures })
	px.Up()
	before := len(log.snapshot())
	t.Logf("outage ended after %v; relay %+v", time.Since(began), relay.Stats())
	log.waitFor(t, "50 more deliveries after the outage", func(ps []published) bool { return len(ps) >= before+50 })
	t.Logf("50 more after %v; relay %+v", time.Since(began), relay.Stats())
	close(stop)
	<-writerDone
	mu.Lock()
	all := append([]string(nil), written...)
	mu.Unlock()
	got := log.waitIDs(t, all)
	t.Logf("all after %v", time.Since(began))
	waitPending(t, ob, 0)
	stopRelay()
	cancel()
	<-subDone
	dups := checkOrder(t, got)
	s := relay.Stats()
	t.Logf("%d committed, %d deliveries, %d duplicates; relay: %d published, %d failures, last error %v", len(all), len(got), dups, s.Published, s.Failures, s.LastError)
}

// waitRelay polls relay's Stats (the relay has no event to wait on) until
// cond holds, failing t after wait.
func waitRelay(t testing.TB, relay *outbox.Relay, what string, cond func(outbox.Stats) bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond(relay.Stats()) {
		select {
		case <-deadline.C:
			t.Fatalf("waited %v for %s; relay %+v", wait, what, relay.Stats())
		case <-tick.C:
		}
	}
}
