package amqp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// maxNameLen is AMQP's short-string limit, which bounds exchange, queue and
// routing-key names.
const maxNameLen = 255

// ValidateTopic reports whether topic can be an exchange name: 1 to 255
// bytes of letters, digits, '-', '_', '.' and ':', not starting with the
// reserved "amq." prefix. Errors wrap message.ErrInvalidTopic.
func ValidateTopic(topic string) error {
	if err := adapter.ValidateTopic(topic); err != nil {
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

// groupTopology names what a group consists of on a topic (see the
// package doc's Topology section).
type groupTopology struct {
	base      string   // WithQueueName(topic, group)
	shards    []string // shard queues base.0 ... base.N-1; nil in competing mode
	router    string   // headers exchange routing on the ferry-shard-<bucket> headers to the shards
	unsharded string   // fanout exchange for messages without such a header: to shard 0
	members   string   // fanout exchange the members' heartbeats go through
}

// topologyFor returns the names of group's topology on topic.
func (c *config) topologyFor(topic, group string) (groupTopology, error) {
	base, err := c.queueFor(topic, group)
	if err != nil {
		return groupTopology{}, err
	}
	t := groupTopology{base: base}
	if c.competing {
		return t, nil
	}
	if base == topic {
		return groupTopology{}, fmt.Errorf("amqp: %w: the queue name of group %q on topic %q is the topic's own name; a sharded group needs an exchange of that name", message.ErrInvalidConfig, group, topic)
	}
	longest := base + ".unsharded"
	if len(longest) > maxNameLen {
		return groupTopology{}, fmt.Errorf("amqp: %w: group %q on topic %q: the name %q is %d bytes, the limit is %d", message.ErrInvalidConfig, group, topic, longest, len(longest), maxNameLen)
	}
	t.router, t.unsharded, t.members = base, base+".unsharded", base+".members"
	t.shards = make([]string, c.shards)
	for i := range t.shards {
		t.shards[i] = base + "." + strconv.Itoa(i)
	}
	return t, nil
}

// declareGroup declares group's durable topology on topic and binds it to
// the topic's exchange: in competing mode one queue; otherwise the router
// exchange bound to the topic's exchange with the binding key, the shard
// queues bound to the router (bucket b of ShardBuckets to shard b mod N,
// one binding per shard),
// and the unsharded exchange (the router's alternate exchange) bound to
// shard 0. Every declaration is idempotent.
func (c *config) declareGroup(ch *amqp091.Channel, topic, group string) (groupTopology, error) {
	t, err := c.topologyFor(topic, group)
	if err != nil {
		return t, err
	}
	if t.shards == nil {
		if _, err := ch.QueueDeclare(t.base, true, false, false, false, c.queueDeclareArgs()); err != nil {
			return t, declareErr(fmt.Sprintf("declare queue %q", t.base), err)
		}
		if err := ch.QueueBind(t.base, c.bindKey(), topic, false, nil); err != nil {
			return t, declareErr(fmt.Sprintf("bind queue %q to exchange %q with key %q", t.base, topic, c.bindKey()), err)
		}
		return t, nil
	}
	if err := ch.ExchangeDeclare(t.unsharded, amqp091.ExchangeFanout, true, false, false, false, nil); err != nil {
		return t, declareErr(fmt.Sprintf("declare fanout exchange %q", t.unsharded), err)
	}
	routerArgs := amqp091.Table{"alternate-exchange": t.unsharded}
	if err := ch.ExchangeDeclare(t.router, amqp091.ExchangeHeaders, true, false, false, false, routerArgs); err != nil {
		return t, declareErr(fmt.Sprintf("declare headers exchange %q", t.router), err)
	}
	// Single active consumer: the broker lets one consumer of a shard
	// receive at a time and activates the next one only after the
	// previous one is gone and its unacked deliveries are back in the
	// queue. It backs the members' assignment up: two members that both
	// think a shard is theirs (their views differ for a moment) never
	// both receive from it. Exclusive consumers would not do: quorum
	// queues do not enforce them (RabbitMQ 3.10).
	args := amqp091.Table{"x-single-active-consumer": true}
	for k, v := range c.queueDeclareArgs() {
		if k != "x-single-active-consumer" {
			args[k] = v
		}
	}
	for i, q := range t.shards {
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return t, declareErr(fmt.Sprintf("declare queue %q", q), err)
		}
		if i == 0 {
			if err := ch.QueueBind(q, "", t.unsharded, false, nil); err != nil {
				return t, declareErr(fmt.Sprintf("bind queue %q to exchange %q", q, t.unsharded), err)
			}
		}
	}
	// One binding per shard, matching any of its buckets' headers: the
	// headers exchange checks every binding for every message, so the
	// routing cost grows with the bindings (about 1 µs of broker CPU
	// each on RabbitMQ 3.10), not with the buckets.
	for i, q := range t.shards {
		spec := amqp091.Table{"x-match": "any"}
		for b := i; b < ShardBuckets; b += len(t.shards) {
			spec[bucketHeaders[b]] = "1"
		}
		if err := ch.QueueBind(q, "", t.router, false, spec); err != nil {
			return t, declareErr(fmt.Sprintf("bind queue %q to exchange %q", q, t.router), err)
		}
	}
	if err := ch.ExchangeBind(t.router, c.bindKey(), topic, false, nil); err != nil {
		return t, declareErr(fmt.Sprintf("bind exchange %q to exchange %q with key %q", t.router, topic, c.bindKey()), err)
	}
	return t, nil
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
