package reliability_test

import (
	"context"
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
	restartUnderLoad(t, "rabbitmq", pub, sub, topic, "q", "broker restart, quorum queues", "amqp (single node)",
		"scripts/services.sh restart rabbitmq while 4 publishers and a 4-handler group use quorum queues")
}
