package amqp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/message"
)

var _ delay.Subscriber = (*Subscriber)(nil)

// tierRedeclare is how often SubscribeTier declares its wait queue again
// when the queues have an x-expires (WithQueueArgs): a declaration renews
// the queue's lease, and a wait queue has no consumer that would.
const tierRedeclare = 10 * time.Second

// waitTopology names a tier's wait topology for one group.
type waitTopology struct {
	exchange string        // the tier's exchange, named after the tier (retry publishes to it)
	router   string        // headers exchange: only this group's messages (delay.HeaderGroup)
	queue    string        // the wait queue, with the tier's TTL
	args     amqp091.Table // the wait queue's arguments
	expires  bool          // the queue has an x-expires: redeclare it now and then
}

// waitFor returns the wait topology of tierTopic (a tier of topic) for
// the subscriber's group.
func (c *config) waitFor(topic, tierTopic string, d time.Duration) (waitTopology, error) {
	if err := ValidateTopic(tierTopic); err != nil {
		return waitTopology{}, err
	}
	topo, err := c.topologyFor(topic, c.Group)
	if err != nil {
		return waitTopology{}, err
	}
	suffix := strings.TrimPrefix(tierTopic, topic)
	if suffix == tierTopic || suffix == "" {
		suffix = "." + tierTopic
	}
	name := topo.base + suffix
	if len(name) > maxNameLen {
		return waitTopology{}, fmt.Errorf("amqp: %w: wait queue of tier %q for group %q is %d bytes, the limit is %d", message.ErrInvalidConfig, tierTopic, c.Group, len(name), maxNameLen)
	}
	args := amqp091.Table{"x-message-ttl": d.Milliseconds()}
	if topo.shards == nil {
		// Competing consumers: back to the group's one queue through the
		// default exchange.
		args["x-dead-letter-exchange"] = ""
		args["x-dead-letter-routing-key"] = topo.base
	} else {
		// Back through the group's router, which sends the message to
		// its key's shard by its ferry-shard header, as on first publish.
		args["x-dead-letter-exchange"] = topo.router
	}
	if c.quorum {
		args["x-queue-type"] = "quorum"
		// Quorum queues dead-letter at most once unless told otherwise.
		args["x-dead-letter-strategy"] = "at-least-once"
		args["x-overflow"] = "reject-publish"
	}
	w := waitTopology{exchange: tierTopic, router: name, queue: name, args: args}
	if v, ok := c.queueArgs["x-expires"]; ok {
		args["x-expires"] = v
		w.expires = true
	}
	return w, nil
}

// SubscribeTier declares tierTopic, a delay tier of topic (see
// retry.WithDelayedRetry), for the Subscriber's group and keeps it
// declared (after every reconnection) until ctx ends (nil) or Close
// (message.ErrClosed). It consumes nothing: RabbitMQ holds each message
// for the tier's delay and then routes it back to the group's queues,
// where the topic's own Subscribe call hands it to its handler; h is
// not called here.
//
// The tier is an exchange named tierTopic (the exchange kind of the
// Subscriber, bound with its binding key; the retry middleware publishes
// to it), a headers exchange and a wait queue, both named
// <topic>.<group>-retry-<delay> (WithQueueName's base and the tier's
// suffix), the queue bound for this group's messages only
// (delay.HeaderGroup). The wait queue is durable, with x-message-ttl set
// to delay and x-dead-letter-exchange set to the group's router (or,
// with WithCompetingConsumers, the default exchange and the group's
// queue as routing key). Since every message of the queue has the same
// TTL, the head always expires first, and a message goes back at its
// due time or just after (the TTL starts when the broker stores the
// message, after the retry middleware computed its due header), never
// before. With WithQuorumQueues the wait queue is a quorum queue with
// x-dead-letter-strategy at-least-once and x-overflow reject-publish,
// so that a message is dead-lettered at least once, never dropped; on
// classic queues the broker dead-letters a stored, persistent message
// once it expires, also after a restart. Of WithQueueArgs only x-expires
// is applied (then the queue is declared again every 10 s to renew it);
// the delayed-message plugin is not used.
//
// A message back from the tier lands at the tail of its key's shard: it
// is handled after the messages of its key that came meanwhile.
// retry.Policy.Subscribe calls SubscribeTier; applications rarely do.
func (s *Subscriber) SubscribeTier(ctx context.Context, topic, tierTopic string, d time.Duration, h message.Handler) error {
	if ctx == nil {
		return fmt.Errorf("amqp: subscribe tier %q: %w: nil context", tierTopic, message.ErrInvalidConfig)
	}
	if h == nil {
		return fmt.Errorf("amqp: %w", message.ErrNilHandler)
	}
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if d < time.Millisecond {
		return fmt.Errorf("amqp: subscribe tier %q: %w: delay %v must be at least 1ms (x-message-ttl)", tierTopic, message.ErrInvalidConfig, d)
	}
	w, err := s.cfg.waitFor(topic, tierTopic, d)
	if err != nil {
		return err
	}
	rctx, end, err := s.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("amqp: subscribe tier %q: %w", tierTopic, err)
	}
	defer end()
	for {
		sess, err := s.conn.get(rctx)
		if err != nil {
			break
		}
		err = s.declareTier(sess, topic, w)
		if errors.Is(err, message.ErrInvalidConfig) {
			return err
		}
		if err != nil {
			s.log("ferry amqp: declaring a delay tier failed; retrying", "topic", topic, "tier", tierTopic, "group", s.cfg.Group, "err", err.Error())
			if s.conn.pause(rctx, sess, s.cfg.reconnect[0]) != nil {
				break
			}
			continue
		}
		// Ready (message.WithReady): the tier is declared and bound, so
		// a message the retry middleware sends to it is kept.
		message.SignalReady(rctx)
		var renew <-chan time.Time
		var t *time.Timer
		if w.expires {
			t = time.NewTimer(tierRedeclare)
			renew = t.C
		}
		select {
		case <-rctx.Done():
		case <-sess.down:
		case <-renew:
		}
		if t != nil {
			t.Stop()
		}
		if rctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return message.ErrClosed
}

// declareTier declares the topic's group topology (the dead-letter
// target) and the tier's wait topology.
func (s *Subscriber) declareTier(sess *session, topic string, w waitTopology) error {
	ch, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", s.conn.scrub(err))
	}
	defer ch.Close()
	c := s.cfg
	if err := c.declareExchange(ch, topic); err != nil {
		return err
	}
	if _, err := c.declareGroup(ch, topic, c.Group); err != nil {
		return err
	}
	if err := c.declareExchange(ch, w.exchange); err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(w.router, amqp091.ExchangeHeaders, true, false, false, false, nil); err != nil {
		return declareErr(fmt.Sprintf("declare headers exchange %q", w.router), err)
	}
	if err := ch.ExchangeBind(w.router, c.bindKey(), w.exchange, false, nil); err != nil {
		return declareErr(fmt.Sprintf("bind exchange %q to exchange %q with key %q", w.router, w.exchange, c.bindKey()), err)
	}
	if _, err := ch.QueueDeclare(w.queue, true, false, false, false, w.args); err != nil {
		return declareErr(fmt.Sprintf("declare wait queue %q", w.queue), err)
	}
	spec := amqp091.Table{"x-match": "all", delay.HeaderGroup: c.Group}
	if err := ch.QueueBind(w.queue, "", w.router, false, spec); err != nil {
		return declareErr(fmt.Sprintf("bind wait queue %q to exchange %q", w.queue, w.router), err)
	}
	return nil
}
