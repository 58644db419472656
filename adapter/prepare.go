package adapter

import (
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// ValidateTopic reports an empty topic as message.ErrInvalidTopic. It is the
// rule every adapter shares; adapters add their broker's own rules on top
// (ValidateLogTopic for Kafka's).
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: topic name is empty", message.ErrInvalidTopic)
	}
	return nil
}

// Prepare checks a Publish call's topic (ValidateTopic) and messages and
// fills in missing IDs (message.NewID's UUIDv7s) and times (time.Now). It
// changes nothing unless every message is valid, so a rejected call
// publishes nothing and leaves the messages as they were. Adapters call it
// at the top of Publish, after their own checks of the topic and the
// messages.
//
// Errors wrap message.ErrInvalidTopic (an empty topic) or
// message.ErrInvalidMessage (a nil message, naming its index). A call's new
// IDs come from one message.NewIDs: one string, one clock reservation, in
// order.
func Prepare(topic string, msgs []*message.Message) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("%w: message #%d of %d is nil", message.ErrInvalidMessage, i, len(msgs))
		}
	}
	var now time.Time
	need := 0
	for _, m := range msgs {
		if m.ID == "" {
			need++
		}
		if m.Time.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			m.Time = now
		}
	}
	if need == 0 {
		return nil
	}
	i := 0
	for id := range message.NewIDs(need) {
		for msgs[i].ID != "" {
			i++
		}
		msgs[i].ID = id
		i++
	}
	return nil
}
