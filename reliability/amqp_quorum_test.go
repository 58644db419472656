package reliability_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
)

// TestAMQPQuorumQueueBrokerRestart restarts the (single-node) RabbitMQ
// while 4 publishers and a 4-handler group use quorum queues
// (amqp.WithQuorumQueues): every confirmed message is consumed. The 3-node
// cluster's leader-node kill is TestAMQPClusterLeaderNodeKill.
func TestAMQPQuorumQueueBrokerRestart(t *testing.T) {
	needFaults(t)
	raw := testenv.NeedAMQP(t)
	topic := name("rel_quorum")
	fast := amqp.WithReconnectBackoff(50*time.Millisecond, time.Second)
	pub, err := amqp.NewPublisher(raw, fast, amqp.WithQuorumQueues(), amqp.WithDeclareGroups(topic+"_g"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := amqp.NewSubscriber(raw, fast, amqp.WithQuorumQueues(), amqp.WithGroup(topic+"_g"), amqp.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Declare(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	sb := subscribe(context.Background(), sub, topic, l.handle)
	stop := publishLoop(pub, topic, "q", 4, 10*time.Second, l, func(i int) string { return fmt.Sprint(i % 64) })
	defer stop()
	l.waitAckedAtLeast(t, 300, 60*time.Second)
	before := l.ackedCount()
	start := time.Now()
	testenv.RestartService(t, "rabbitmq")
	outage := time.Since(start)
	l.waitAckedAtLeast(t, l.ackedCount()+300, 120*time.Second)
	stop()
	lost := l.waitAcked(3 * time.Minute)
	sb.running(t)
	sb.stop(t)
	r := l.result()
	r.Fault, r.Adapter = "broker restart, quorum queues", "amqp (single node)"
	r.Injection = "scripts/services.sh restart rabbitmq while 4 publishers and a 4-handler group use quorum queues"
	r.Extra = fmt.Sprintf("acked_before_restart=%d restart_took=%v", before, outage.Round(100*time.Millisecond))
	report(t, r, lost)
}
