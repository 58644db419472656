package adapter

import (
	"context"
	"errors"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// ObservePublish reports the outcome of one Publish call of an adapter
// (system: its messaging.system name) to o: an EventPublished, or an
// EventPublishFailed with the error and how many messages failed (those a
// *message.PublishError lists, all of them otherwise), with the call's
// duration since start. Use it in a deferred call when the adapter has an
// observer; o must not be nil.
func ObservePublish(ctx context.Context, o message.Observer, system, topic string, msgs []*message.Message, start time.Time, err error) {
	ev := message.Event{Kind: message.EventPublished, System: system, Topic: topic, Msgs: msgs, Count: len(msgs),
		Partition: -1, Duration: time.Since(start)}
	if err != nil {
		ev.Kind, ev.Err, ev.Failed = message.EventPublishFailed, err, len(msgs)
		var pe *message.PublishError
		if errors.As(err, &pe) {
			ev.Failed = len(pe.Failed)
		}
	}
	o.Observe(ctx, ev)
}
