package amqp

import (
	"fmt"
	"log/slog"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// Exchange kinds accepted by WithExchangeKind.
const (
	ExchangeTopic  = "topic"
	ExchangeFanout = "fanout"
	ExchangeDirect = "direct"
)

// Defaults of the options below.
const (
	DefaultGroup           = "default"
	DefaultKeyHeader       = "ferry-key"
	DefaultMaxPayload      = 16 << 20 // RabbitMQ 4.x's default max_message_size
	DefaultInitialBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff      = 10 * time.Second
	DefaultDrainTimeout    = 30 * time.Second
	DefaultPublishChannels = 1
	DefaultMinPrefetch     = 128
	DefaultShards          = 16
	DefaultGroupHeartbeat  = 500 * time.Millisecond
)

// TimeHeader carries Message.Time as Unix milliseconds (an AMQP long), since
// the AMQP timestamp property only has whole seconds.
const TimeHeader = "ferry-time"

// Option configures a Publisher or a Subscriber. The same options are
// accepted by both, so one topology option slice can be shared; an option
// that concerns only one side is ignored by the other (each says so).
type Option func(*config) error

type config struct {
	amqpConfig     amqp091.Config
	haveConfig     bool
	exchangeKind   string
	bindingKey     string
	haveBindingKey bool
	queueName      func(topic, group string) string
	quorum         bool
	queueArgs      amqp091.Table
	dlx            string
	dlxRoutingKey  string
	haveDLXKey     bool
	keyHeader      string
	routingKey     func(topic string, m *message.Message) string
	maxPayload     int
	group          string
	concurrency    int
	prefetch       int
	redelivery     [2]time.Duration
	drainTimeout   time.Duration
	reconnect      [2]time.Duration
	pubChannels    int
	logger         *slog.Logger
	onState        func(StateChange)
	shards         int
	competing      bool
	heartbeat      time.Duration
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		exchangeKind: ExchangeTopic,
		queueName:    func(topic, group string) string { return topic + "." + group },
		keyHeader:    DefaultKeyHeader,
		routingKey:   func(_ string, m *message.Message) string { return m.Key },
		maxPayload:   DefaultMaxPayload,
		group:        DefaultGroup,
		concurrency:  1,
		drainTimeout: DefaultDrainTimeout,
		reconnect:    [2]time.Duration{DefaultInitialBackoff, DefaultMaxBackoff},
		redelivery:   [2]time.Duration{DefaultInitialBackoff, DefaultMaxBackoff},
		pubChannels:  DefaultPublishChannels,
		shards:       DefaultShards,
		heartbeat:    DefaultGroupHeartbeat,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// bindKey is the binding key of group queues.
func (c *config) bindKey() string {
	if c.haveBindingKey {
		return c.bindingKey
	}
	if c.exchangeKind == ExchangeTopic {
		return "#"
	}
	return ""
}

// prefetchCount is the Qos prefetch of a subscriber's channel.
func (c *config) prefetchCount() int {
	if c.prefetch > 0 {
		return c.prefetch
	}
	return max(DefaultMinPrefetch, 16*c.concurrency)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("amqp: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// WithConfig passes an amqp091.Config to the client (TLS, SASL, heartbeat,
// vhost, frame size, connection properties, dialer). Default: the client's
// defaults (10 s heartbeat, credentials and vhost from the URL). Its
// Recovery field must be nil: ferry reconnects by itself.
func WithConfig(cfg amqp091.Config) Option {
	return func(c *config) error {
		if cfg.Recovery != nil {
			return invalid("amqp091.Config.Recovery must be nil: ferry reconnects and redeclares by itself")
		}
		c.amqpConfig = cfg
		c.haveConfig = true
		return nil
	}
}

// WithExchangeKind sets the type of the exchange a topic maps to:
// ExchangeTopic (default), ExchangeFanout or ExchangeDirect.
func WithExchangeKind(kind string) Option {
	return func(c *config) error {
		switch kind {
		case ExchangeTopic, ExchangeFanout, ExchangeDirect:
			c.exchangeKind = kind
			return nil
		}
		return invalid("exchange kind %q: want %q, %q or %q", kind, ExchangeTopic, ExchangeFanout, ExchangeDirect)
	}
}

// WithBindingKey sets the binding key of a group's queue, such as
// "order.*" or "order.#" on a topic exchange. Default: "#" (everything) for
// topic exchanges, "" otherwise (fanout ignores it; direct matches an empty
// routing key). Used by Subscriber and by Publisher.Declare.
func WithBindingKey(key string) Option {
	return func(c *config) error {
		if len(key) > 255 {
			return invalid("binding key is %d bytes, the limit is 255", len(key))
		}
		c.bindingKey, c.haveBindingKey = key, true
		return nil
	}
}

// WithQueueName sets how a group's queue is named. Default: topic + "." +
// group. The name must be at most 255 bytes and must not start with "amq.".
func WithQueueName(f func(topic, group string) string) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("nil queue naming function")
		}
		c.queueName = f
		return nil
	}
}

// WithQuorumQueues declares group queues as quorum queues
// (x-queue-type=quorum): replicated, with a broker-side delivery limit on
// RabbitMQ 4.x. Default: classic queues. An existing queue keeps its type;
// declaring it with another type fails with PRECONDITION_FAILED.
func WithQuorumQueues() Option {
	return func(c *config) error { c.quorum = true; return nil }
}

// WithQueueArgs adds arguments to every group queue declaration (for
// example x-max-length, x-message-ttl, x-delivery-limit). Default: none.
func WithQueueArgs(args amqp091.Table) Option {
	return func(c *config) error {
		if err := args.Validate(); err != nil {
			return invalid("queue arguments: %v", err)
		}
		if c.queueArgs == nil {
			c.queueArgs = amqp091.Table{}
		}
		for k, v := range args {
			c.queueArgs[k] = v
		}
		return nil
	}
}

// WithDeadLetterExchange declares group queues with the native
// x-dead-letter-exchange argument, and x-dead-letter-routing-key when
// routingKey is given. The broker then dead-letters what it drops itself
// (expired TTL, length overflow, quorum delivery limit). ferry's handler
// errors never reject a message, so they do not reach it: use the retry
// middleware for that. Default: none. The exchange is not declared by ferry.
func WithDeadLetterExchange(exchange string, routingKey ...string) Option {
	return func(c *config) error {
		if len(routingKey) > 1 {
			return invalid("WithDeadLetterExchange takes at most one routing key")
		}
		c.dlx = exchange
		if len(routingKey) == 1 {
			c.dlxRoutingKey, c.haveDLXKey = routingKey[0], true
		}
		return nil
	}
}

// WithKeyHeader sets the header that carries Message.Key. Default
// "ferry-key". Deliveries without it have an empty Key.
func WithKeyHeader(name string) Option {
	return func(c *config) error {
		if name == "" {
			return invalid("empty key header name")
		}
		c.keyHeader = name
		return nil
	}
}

// WithRoutingKey sets how a message's routing key is chosen. Default: the
// message Key. Publisher only. The result must be at most 255 bytes.
func WithRoutingKey(f func(topic string, m *message.Message) string) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("nil routing key function")
		}
		c.routingKey = f
		return nil
	}
}

// WithMaxPayload sets the largest payload Publish accepts; larger ones fail
// with message.ErrMessageTooLarge before anything is sent. Default 16 MiB
// (RabbitMQ 4.x's max_message_size; 3.x allows 128 MiB). Publisher only.
func WithMaxPayload(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("max payload %d must be positive", n)
		}
		c.maxPayload = n
		return nil
	}
}

// WithPublishChannels sets how many AMQP channels a Publisher spreads
// concurrent Publish calls over (one batch always goes to one channel, in
// order). Default 1. Publisher only.
func WithPublishChannels(n int) Option {
	return func(c *config) error {
		if n <= 0 || n > 64 {
			return invalid("publish channels %d: want 1..64", n)
		}
		c.pubChannels = n
		return nil
	}
}

// WithGroup sets the subscriber's group: its queue is
// WithQueueName(topic, group). Default "default". Subscriber only.
func WithGroup(name string) Option {
	return func(c *config) error {
		if name == "" {
			return invalid("empty group name")
		}
		c.group = name
		return nil
	}
}

// WithConcurrency sets the maximum number of handlers running at once.
// Default 1. Subscriber only.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return invalid("concurrency %d must be positive", n)
		}
		c.concurrency = n
		return nil
	}
}

// WithPrefetch sets the channel's Qos prefetch count: how many unacked
// deliveries the broker hands the subscriber. Default max(128,
// 16×concurrency), so that while one key waits for its redelivery backoff
// (holding its queued deliveries unacked) other keys keep flowing.
// Subscriber only.
func WithPrefetch(n int) Option {
	return func(c *config) error {
		if n <= 0 || n > 65535 {
			return invalid("prefetch %d: want 1..65535", n)
		}
		c.prefetch = n
		return nil
	}
}

// WithRedeliveryBackoff bounds the in-process redelivery backoff after a
// handler error: initial after the first failure, doubling, capped at max.
// Default 100 ms to 10 s. Subscriber only.
func WithRedeliveryBackoff(initial, max time.Duration) Option {
	return func(c *config) error {
		if initial <= 0 || max < initial {
			return invalid("redelivery backoff %v..%v: want 0 < initial <= max", initial, max)
		}
		c.redelivery = [2]time.Duration{initial, max}
		return nil
	}
}

// WithDrainTimeout sets how long graceful shutdown lets in-flight handlers
// run before cancelling their context. Default 30 s. Subscriber only.
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("drain timeout %v must be positive", d)
		}
		c.drainTimeout = d
		return nil
	}
}

// WithReconnectBackoff bounds the exponential backoff (with jitter)
// between reconnection attempts. Default 100 ms to 10 s. Reconnection never
// gives up; Close stops it.
func WithReconnectBackoff(initial, max time.Duration) Option {
	return func(c *config) error {
		if initial <= 0 || max < initial {
			return invalid("reconnect backoff %v..%v: want 0 < initial <= max", initial, max)
		}
		c.reconnect = [2]time.Duration{initial, max}
		return nil
	}
}

// WithLogger logs connection state changes and consumer restarts. URLs in
// logs have their password redacted. Default: no logging.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// WithOnStateChange calls f on each connection state change (connected,
// disconnected with the cause, reconnecting, closed). f runs on the
// connection's supervisor goroutine and must not block. Default: none.
func WithOnStateChange(f func(StateChange)) Option {
	return func(c *config) error { c.onState = f; return nil }
}

// WithShards sets how many shard queues a group is split into: at most
// that many members of the group consume at once, each shard by one member
// at a time, in order. It must be the same for every member of a group and
// for Publisher.Declare, and it is fixed when the group is first declared:
// see the package doc ("Changing the shard count"). Default DefaultShards
// (16); 1 to ShardBuckets (64), evenly spread when it divides 64. Used by
// Subscriber and Publisher.Declare; ignored with WithCompetingConsumers.
func WithShards(n int) Option {
	return func(c *config) error {
		if n < 1 || n > ShardBuckets {
			return invalid("shards %d: want 1..%d", n, ShardBuckets)
		}
		c.shards = n
		return nil
	}
}

// WithCompetingConsumers makes a group one queue (WithQueueName) that every
// member consumes at once, the broker handing deliveries round robin: the
// classic RabbitMQ work queue. It gives up per-key order across members:
// two messages of one key can run at the same time on two members, and
// in any order. Order holds only inside one member. Use it for keyless
// work where order does not matter, or to consume a queue that other
// clients also consume. Default: off (a sharded group, which keeps key
// order across members). Used by Subscriber and Publisher.Declare.
func WithCompetingConsumers() Option {
	return func(c *config) error { c.competing = true; return nil }
}

// WithGroupHeartbeat sets how often the members of a sharded group
// announce themselves to each other. A member not heard from for four
// intervals is taken as gone, and its shards are handed to the others, so
// this bounds how long the shards of a crashed member wait (a member that
// leaves gracefully says so and is replaced at once). Default
// DefaultGroupHeartbeat (500 ms); 10 ms to 1 minute. Subscriber only.
func WithGroupHeartbeat(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond || d > time.Minute {
			return invalid("group heartbeat %v: want 10ms..1m", d)
		}
		c.heartbeat = d
		return nil
	}
}
