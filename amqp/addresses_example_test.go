package amqp_test

import (
	"context"
	"log"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/message"
)

// The three nodes of a RabbitMQ cluster, and quorum queues: when the node
// a Publisher or Subscriber is connected to dies, it reconnects to the
// next one, and the queues keep their messages while two of the three
// nodes run. Compiled, not run (it needs the cluster of
// scripts/rabbitmq-cluster.sh; TestAMQPClusterLeaderNodeKill in
// reliability/ runs this setup and kills a node).
func ExampleWithAddresses() {
	nodes := amqp.WithOptions(
		amqp.WithAddresses("amqp://guest:guest@127.0.0.1:5702/", "amqp://guest:guest@127.0.0.1:5703/"),
		amqp.WithQuorumQueues(),
	)
	const first = "amqp://guest:guest@127.0.0.1:5701/"
	pub, err := amqp.NewPublisher(first, nodes, amqp.WithDeclareGroups("billing"))
	if err != nil {
		log.Fatal(err) // none of the three nodes answered
	}
	defer pub.Close()
	sub, err := amqp.NewSubscriber(first, nodes, amqp.WithGroup("billing"))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	if err := pub.Publish(context.Background(), "shop", &message.Message{Key: "order.created"}); err != nil {
		log.Fatal(err)
	}
}
