package reliability_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// fastGroup makes group joins, rebalances and failure detection quick.
func fastGroup() kafka.Option {
	return kafka.WithClientOptions(
		kgo.HeartbeatInterval(200*time.Millisecond),
		kgo.SessionTimeout(6*time.Second),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
}

// deleteKafkaTopics removes the test's topics at the end.
func deleteKafkaTopics(t *testing.T, pub *kafka.Publisher, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(pub.Client()).DeleteTopics(ctx, topics...)
	})
}

// TestKafkaBrokerRestart restarts the real Kafka broker while four
// goroutines publish and a group consumes: every message whose Publish
// returned nil must be consumed; Publish calls during the outage either
// succeed once the broker is back or return an error (both counted).
func TestKafkaBrokerRestart(t *testing.T) {
	needFaults(t)
	brokers := testenv.NeedKafka(t)
	topic := name("rel_kafka_restart")
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(4, -1),
		kafka.WithClientOptions(kgo.ProducerLinger(2*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deleteKafkaTopics(t, pub, topic)
	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup(topic+"_g"), kafka.WithConcurrency(4),
		kafka.WithTopicCreation(4, -1), kafka.WithCommitInterval(200*time.Millisecond), fastGroup())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	restartUnderLoad(t, "kafka", pub, sub, topic, "k", "broker restart", "kafka",
		"scripts/services.sh restart kafka while 4 publishers and a 4-handler group run")
}

// restartUnderLoad restarts service (scripts/services.sh) while 4
// publishers send to topic (keys 0-63) and sub's group handles it: once 300
// are acknowledged, and until 300 more are after the restart; then every
// acknowledged message must be handled. It reports the row.
func restartUnderLoad(t *testing.T, service string, pub message.Publisher, sub message.Subscriber, topic, prefix, fault, adapter, injection string) {
	t.Helper()
	l := newLedger()
	sb := subscribe(context.Background(), sub, topic, l.handle)
	stop := publishLoop(pub, topic, prefix, 4, 10*time.Second, l, func(i int) string { return fmt.Sprint(i % 64) })
	defer stop()

	l.waitAckedAtLeast(t, 300, 60*time.Second)
	before := l.ackedCount()
	start := time.Now()
	testenv.RestartService(t, service)
	outage := time.Since(start)
	// Keep publishing until the broker has acknowledged as many again.
	l.waitAckedAtLeast(t, l.ackedCount()+300, 120*time.Second)
	stop()

	lost := l.waitAcked(3 * time.Minute)
	sb.running(t)
	sb.stop(t)
	r := l.result()
	r.Fault, r.Adapter, r.Injection = fault, adapter, injection
	r.Extra = fmt.Sprintf("acked_before_restart=%d restart_took=%v", before, outage.Round(100*time.Millisecond))
	report(t, r, lost)
}
