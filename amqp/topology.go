package amqp

import (
	"errors"
	"fmt"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// maxNameLen is AMQP's short-string limit, which bounds exchange, queue and
// routing-key names.
const maxNameLen = 255

// ValidateTopic reports whether topic can be an exchange name: 1 to 255
// bytes of letters, digits, '-', '_', '.' and ':', not starting with the
// reserved "amq." prefix. Errors wrap message.ErrInvalidTopic.
func ValidateTopic(topic string) error {
	if err := message.ValidateTopic(topic); err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	if len(topic) > maxNameLen {
		return fmt.Errorf("amqp: %w: topic is %d bytes, AMQP exchange names are at most %d", message.ErrInvalidTopic, len(topic), maxNameLen)
	}
	if strings.HasPrefix(topic, "amq.") {
		return fmt.Errorf("amqp: %w: topic %q uses the reserved \"amq.\" prefix", message.ErrInvalidTopic, topic)
	}
	for i := 0; i < len(topic); i++ {
		if !nameByte(topic[i]) {
			return fmt.Errorf("amqp: %w: topic %q has %q at byte %d; allowed are letters, digits, '-', '_', '.' and ':'", message.ErrInvalidTopic, topic, topic[i], i)
		}
	}
	return nil
}

func nameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '-' || b == '_' || b == '.' || b == ':'
}

// queueFor returns and checks the queue name of group on topic.
func (c *config) queueFor(topic, group string) (string, error) {
	q := c.queueName(topic, group)
	switch {
	case q == "":
		return "", fmt.Errorf("amqp: %w: queue name for topic %q group %q is empty", message.ErrInvalidConfig, topic, group)
	case len(q) > maxNameLen:
		return "", fmt.Errorf("amqp: %w: queue name for topic %q group %q is %d bytes, the limit is %d", message.ErrInvalidConfig, topic, group, len(q), maxNameLen)
	case strings.HasPrefix(q, "amq."):
		return "", fmt.Errorf("amqp: %w: queue name %q uses the reserved \"amq.\" prefix", message.ErrInvalidConfig, q)
	}
	return q, nil
}

// queueArgs returns the arguments group queues are declared with.
func (c *config) queueDeclareArgs() amqp091.Table {
	if c.queueArgs == nil && !c.quorum && c.dlx == "" {
		return nil
	}
	t := amqp091.Table{}
	for k, v := range c.queueArgs {
		t[k] = v
	}
	if c.quorum {
		t["x-queue-type"] = "quorum"
	}
	if c.dlx != "" {
		t["x-dead-letter-exchange"] = c.dlx
		if c.haveDLXKey {
			t["x-dead-letter-routing-key"] = c.dlxRoutingKey
		}
	}
	return t
}

// declareExchange declares topic's durable exchange.
func (c *config) declareExchange(ch *amqp091.Channel, topic string) error {
	if err := ch.ExchangeDeclare(topic, c.exchangeKind, true, false, false, false, nil); err != nil {
		return declareErr(fmt.Sprintf("declare %s exchange %q", c.exchangeKind, topic), err)
	}
	return nil
}

// declareQueue declares group's durable queue and binds it to topic.
func (c *config) declareQueue(ch *amqp091.Channel, topic, group string) (string, error) {
	q, err := c.queueFor(topic, group)
	if err != nil {
		return "", err
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, c.queueDeclareArgs()); err != nil {
		return "", declareErr(fmt.Sprintf("declare queue %q", q), err)
	}
	if err := ch.QueueBind(q, c.bindKey(), topic, false, nil); err != nil {
		return "", declareErr(fmt.Sprintf("bind queue %q to exchange %q with key %q", q, topic, c.bindKey()), err)
	}
	return q, nil
}

// declareErr wraps a declaration error; a PRECONDITION_FAILED (an existing
// exchange or queue with other settings) or ACCESS_REFUSED also wraps
// message.ErrInvalidConfig, and is fatal (isFatal).
func declareErr(what string, err error) error {
	if isFatal(err) {
		return fmt.Errorf("amqp: %s: %w: %w", what, message.ErrInvalidConfig, err)
	}
	return fmt.Errorf("amqp: %s: %w", what, err)
}

// isFatal reports a server error that retrying will not fix.
func isFatal(err error) bool {
	var ae *amqp091.Error
	if !errors.As(err, &ae) || !ae.Server {
		return false
	}
	switch ae.Code {
	case amqp091.PreconditionFailed, amqp091.AccessRefused, amqp091.NotAllowed, amqp091.NotImplemented:
		return true
	}
	return false
}
