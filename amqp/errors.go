package amqp

import "errors"

// ErrNacked reports a message the broker refused with basic.nack (an
// internal error, or a queue at its length limit with overflow set to
// reject-publish). The message was not stored; publishing it again may
// succeed. Listed per message in a *message.PublishError.
var ErrNacked = errors.New("amqp: broker nacked the message")
