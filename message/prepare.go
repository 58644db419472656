package message

import (
	"fmt"
	"strings"
	"time"
)

// ValidateTopic reports an empty topic as ErrInvalidTopic. Adapters add
// their broker's own rules on top.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: topic name is empty", ErrInvalidTopic)
	}
	return nil
}

// Prepare checks a Publish call's topic and messages and fills in missing
// IDs and times. It changes nothing unless every message is valid, so a
// rejected call publishes nothing and leaves the messages as they were.
// Adapters call it at the top of Publish.
func Prepare(topic string, msgs []*Message) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("%w: message #%d of %d is nil", ErrInvalidMessage, i, len(msgs))
		}
	}
	var now time.Time
	need := 0
	for _, m := range msgs {
		if m.ID != "" && !m.Time.IsZero() {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		if m.ID == "" {
			need++
		}
		if m.Time.IsZero() {
			m.Time = now
		}
	}
	if need == 0 {
		return nil
	}
	// The new IDs share one string: one allocation per call.
	var b strings.Builder
	newIDs(&b, now.UnixMilli(), need)
	ids := b.String()
	for _, m := range msgs {
		if m.ID == "" {
			m.ID, ids = ids[:idLen], ids[idLen:]
		}
	}
	return nil
}

// Clone returns a copy of m with its own Headers map and Payload slice,
// and the Delivery metadata cleared. Use it to publish a received message
// elsewhere (a dead-letter topic, a replay).
func (m *Message) Clone() *Message {
	c := &Message{ID: m.ID, Key: m.Key, Time: m.Time}
	if m.Payload != nil {
		c.Payload = append([]byte(nil), m.Payload...)
	}
	if m.Headers != nil {
		c.Headers = make(map[string]string, len(m.Headers))
		for k, v := range m.Headers {
			c.Headers[k] = v
		}
	}
	return c
}
