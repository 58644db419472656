package dispatch

import (
	"context"

	"github.com/ferrymsg/ferry/message"
)

// ErrorObserver returns a Config.OnError that reports each handler error
// to o as an EventHandlerError of the message; nil when o is nil (no
// observer, nothing to call).
func ErrorObserver(o message.Observer) func(*Delivery, error) {
	if o == nil {
		return nil
	}
	return func(d *Delivery, err error) {
		ev := message.MessageEvent(message.EventHandlerError, d.Msg)
		ev.Err = err
		o.Observe(context.Background(), ev)
	}
}

// ObserveHandled reports to o that d's handler succeeded (an
// EventHandled); nothing when o is nil.
func ObserveHandled(o message.Observer, d *Delivery) {
	if o != nil {
		o.Observe(context.Background(), message.MessageEvent(message.EventHandled, d.Msg))
	}
}
