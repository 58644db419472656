package amqp

import (
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// MessageFromDelivery maps a delivery that another amqp091 client read
// (a tool's temporary queue, a basic.get) to the Message a Subscriber with
// the default options would deliver for topic and group: ID from
// message_id (DerivedID without one), Key and Time from the ferry-key and
// ferry-time headers (Time without ferry-time: see the package doc, #
// Message mapping), the shard header dropped, properties as their
// property headers (see the package doc, # Message mapping).
func MessageFromDelivery(topic, group string, d *amqp091.Delivery) *message.Message {
	if d == nil {
		return nil
	}
	return defaultConfig().toMessage(topic, group, d)
}
