package adapter

import (
	"fmt"

	"github.com/ferrymsg/ferry/message"
)

// MaxLogTopicLen is the longest topic name ValidateLogTopic accepts:
// Kafka's limit.
const MaxLogTopicLen = 249

// ValidateLogTopic applies Kafka's topic-name rules: 1 to MaxLogTopicLen
// (249) bytes from [a-zA-Z0-9._-], and not "." or "..". The kafka adapter
// uses it, and so does inmem, so that code tested on inmem runs unchanged
// on Kafka; an adapter for another log broker (Redpanda, a Kafka-compatible
// service) may use it too. The error wraps message.ErrInvalidTopic and
// names the problem.
func ValidateLogTopic(topic string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if len(topic) > MaxLogTopicLen {
		return fmt.Errorf("%w: topic name is %d characters, Kafka allows at most %d", message.ErrInvalidTopic, len(topic), MaxLogTopicLen)
	}
	if topic == "." || topic == ".." {
		return fmt.Errorf("%w: topic name %q is reserved by Kafka", message.ErrInvalidTopic, topic)
	}
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: topic name %q has illegal character %q at byte %d (Kafka allows letters, digits, '.', '_' and '-')", message.ErrInvalidTopic, topic, rune(c), i)
		}
	}
	return nil
}
