package amqp

import "errors"

// ErrNacked reports a message the broker refused with basic.nack (an
// internal error, or a queue at its length limit with overflow set to
// reject-publish). The message was not stored; publishing it again may
// succeed. Listed per message in a *message.PublishError.
var ErrNacked = errors.New("amqp: broker nacked the message")

// ErrUndecodableDelivery reports a connection that amqp091-go closed
// because it could not decode a frame the broker sent: a delivery whose
// header table is nested deeper than the client reads (32 levels), or a
// frame over the negotiated frame_max. Such a message stays at the head of
// its queue and is sent again on every reconnection. It is the cause (in
// StateChange.Err and the log) of each such disconnection; see the
// package doc, # Undecodable deliveries.
var ErrUndecodableDelivery = errors.New("amqp: the client could not decode a frame from the broker")
