package amqp

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Exchange kinds accepted by WithExchangeKind.
const (
	ExchangeTopic  = "topic"
	ExchangeFanout = "fanout"
	ExchangeDirect = "direct"
)

// Defaults of the options below. DefaultGroup and DefaultDrainTimeout are
// the adapter kit's (adapter.DefaultSubscriberConfig), the same on every
// adapter; DefaultInitialBackoff and DefaultMaxBackoff bound both the
// redelivery and the reconnection backoff.
const (
	DefaultGroup           = adapter.DefaultGroup
	DefaultKeyHeader       = "ferry-key"
	DefaultMaxPayload      = 16 << 20 // RabbitMQ 4.x's default max_message_size
	DefaultInitialBackoff  = adapter.DefaultInitialBackoff
	DefaultMaxBackoff      = adapter.DefaultMaxBackoff
	DefaultDrainTimeout    = adapter.DefaultDrainTimeout
	DefaultPublishChannels = 1
	DefaultMinPrefetch     = 128
	DefaultShards          = 16
	DefaultGroupHeartbeat  = 500 * time.Millisecond
	DefaultDialTimeout     = 10 * time.Second
)

// TimeHeader carries Message.Time as Unix milliseconds (an AMQP long), since
// the AMQP timestamp property only has whole seconds.
const TimeHeader = "ferry-time"

// PublisherOption configures a Publisher. NewPublisher takes only
// PublisherOptions, so a Subscriber option (WithGroup, WithPrefetch, ...)
// given to it is a compile error instead of a silent no-op. Every Option
// is a PublisherOption. A nil PublisherOption is skipped.
type PublisherOption interface {
	applyPublisher(*config) error
}

// SubscriberOption configures a Subscriber. NewSubscriber takes only
// SubscriberOptions, so a Publisher option (WithRoutingKey, WithMaxPayload,
// WithPublishChannels) given to it is a compile error. Every Option is a
// SubscriberOption. A nil SubscriberOption is skipped.
type SubscriberOption interface {
	applySubscriber(*config) error
}

// Option configures both sides and means the same to both: the
// connection (WithConfig, WithReconnectBackoff, WithLogger,
// WithOnStateChange), the mapping of messages (WithKeyHeader), and the
// topology, which a Subscriber declares and Publisher.Declare declares
// exactly as a Subscriber would (WithExchangeKind, WithBindingKey,
// WithQueueName, WithQuorumQueues, WithQueueArgs, WithDeadLetterExchange,
// WithShards, WithCompetingConsumers). Give both sides the same topology
// options; WithOptions bundles a list of them into one Option that both
// constructors take.
type Option interface {
	PublisherOption
	SubscriberOption
}

// sharedOpt is an Option, pubOpt a PublisherOption only, subOpt a
// SubscriberOption only. Their methods skip a nil function, so a typed nil
// inside an option interface is skipped like a nil interface.
type (
	sharedOpt func(*config) error
	pubOpt    func(*config) error
	subOpt    func(*config) error
)

func (o sharedOpt) applyPublisher(c *config) error  { return applyOpt(o, c) }
func (o sharedOpt) applySubscriber(c *config) error { return applyOpt(o, c) }
func (o pubOpt) applyPublisher(c *config) error     { return applyOpt(o, c) }
func (o subOpt) applySubscriber(c *config) error    { return applyOpt(o, c) }

func applyOpt[F ~func(*config) error](f F, c *config) error {
	if f == nil {
		return nil
	}
	return f(c)
}

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
	declareGroups  []string // Publisher: groups declared at first use of a topic
	// Subscriber: group, concurrency, redelivery backoff and drain
	// timeout. Its MaxPending is not used: the dispatcher's bound is
	// twice the prefetch (prefetchCount).
	adapter.SubscriberConfig
	prefetch    int
	reconnect   [2]time.Duration
	dialTimeout time.Duration // 0: the URL's connection_timeout, else DefaultDialTimeout
	pubChannels int
	logger      *slog.Logger
	onState     func(StateChange)
	observers   []message.Observer // WithObserver (observe.go)
	obs         message.Observer   // observers and LogEvents(logger); nil without any
	lagInterval time.Duration      // WithLagInterval; 0: DefaultLagInterval
	shards      int
	competing   bool
	heartbeat   time.Duration

	more moreAddresses // WithAddresses (addresses.go)
}

func defaultConfig() *config {
	return &config{
		exchangeKind:     ExchangeTopic,
		queueName:        func(topic, group string) string { return topic + "." + group },
		keyHeader:        DefaultKeyHeader,
		routingKey:       func(_ string, m *message.Message) string { return m.Key },
		maxPayload:       DefaultMaxPayload,
		SubscriberConfig: adapter.DefaultSubscriberConfig(),
		reconnect:        [2]time.Duration{DefaultInitialBackoff, DefaultMaxBackoff},
		pubChannels:      DefaultPublishChannels,
		shards:           DefaultShards,
		heartbeat:        DefaultGroupHeartbeat,
	}
}

func newPublisherConfig(opts []PublisherOption) (*config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyPublisher(c); err != nil {
			return nil, err
		}
	}
	c.finishObservers()
	return c, nil
}

func newSubscriberConfig(opts []SubscriberOption) (*config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applySubscriber(c); err != nil {
			return nil, err
		}
	}
	if err := c.SubscriberConfig.Validate(); err != nil {
		return nil, fmt.Errorf("amqp: %w", err)
	}
	c.finishObservers()
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
	return min(maxPrefetch, max(DefaultMinPrefetch, 16*c.Concurrency))
}

// maxPrefetch is the largest Qos prefetch count (AMQP's is 16 bits).
const maxPrefetch = 65535

// invalid returns an error wrapping message.ErrInvalidConfig; format
// starts with the option as it was called, e.g. "WithPrefetch(0)".
func invalid(format string, args ...any) error {
	return fmt.Errorf("amqp: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// WithOptions bundles options into one, so that one list can configure
// both sides (the same topology for Publisher.Declare and the
// Subscribers): a []Option does not convert to []PublisherOption or
// []SubscriberOption, but WithOptions(list...) is both. Nil entries are
// skipped. Default: none.
func WithOptions(opts ...Option) Option {
	opts = append([]Option(nil), opts...)
	return sharedOpt(func(c *config) error {
		for _, o := range opts {
			if o == nil {
				continue
			}
			if err := o.applyPublisher(c); err != nil { // the same as applySubscriber for an Option
				return err
			}
		}
		return nil
	})
}

// WithConfig passes an amqp091.Config to the client (TLS, SASL, heartbeat,
// vhost, frame size, connection properties, dialer). Its Recovery field
// must be nil (ferry reconnects by itself), and Heartbeat and FrameSize
// must not be negative. Publisher and Subscriber. Default: the client's
// defaults (10 s heartbeat, credentials and vhost from the URL).
func WithConfig(cfg amqp091.Config) Option {
	return sharedOpt(func(c *config) error {
		switch {
		case cfg.Recovery != nil:
			return invalid("WithConfig: amqp091.Config.Recovery must be nil: ferry reconnects and redeclares by itself")
		case cfg.Heartbeat < 0:
			return invalid("WithConfig: amqp091.Config.Heartbeat %v is negative", cfg.Heartbeat)
		case cfg.FrameSize < 0:
			return invalid("WithConfig: amqp091.Config.FrameSize %d is negative", cfg.FrameSize)
		}
		c.amqpConfig = cfg
		c.haveConfig = true
		return nil
	})
}

// WithExchangeKind sets the type of the exchange a topic maps to:
// ExchangeTopic, ExchangeFanout or ExchangeDirect. Publisher and
// Subscriber (both declare the exchange). Default: ExchangeTopic.
func WithExchangeKind(kind string) Option {
	return sharedOpt(func(c *config) error {
		switch kind {
		case ExchangeTopic, ExchangeFanout, ExchangeDirect:
			c.exchangeKind = kind
			return nil
		}
		return invalid("WithExchangeKind(%q): want %q, %q or %q", kind, ExchangeTopic, ExchangeFanout, ExchangeDirect)
	})
}

// WithBindingKey sets the binding key of a group's queues, such as
// "order.*" or "order.#" on a topic exchange; at most 255 bytes. Used by
// Subscriber and by Publisher.Declare. Default: "#" (everything) for topic
// exchanges, "" otherwise (fanout ignores it; direct matches an empty
// routing key).
func WithBindingKey(key string) Option {
	return sharedOpt(func(c *config) error {
		if len(key) > maxNameLen {
			return invalid("WithBindingKey(%q): %d bytes, the limit is %d", key, len(key), maxNameLen)
		}
		c.bindingKey, c.haveBindingKey = key, true
		return nil
	})
}

// WithQueueName sets how a group's queue is named (the base name of its
// shard queues); f must not be nil. The name it returns must be at most
// 255 bytes and must not start with "amq." (checked at Subscribe and
// Declare). Used by Subscriber and by Publisher.Declare. Default: topic +
// "." + group.
func WithQueueName(f func(topic, group string) string) Option {
	return sharedOpt(func(c *config) error {
		if f == nil {
			return invalid("WithQueueName(nil): want a naming function")
		}
		c.queueName = f
		return nil
	})
}

// WithQuorumQueues declares group queues as quorum queues
// (x-queue-type=quorum): replicated, with a broker-side delivery limit on
// RabbitMQ 4.x. An existing queue keeps its type; declaring it with
// another type fails with PRECONDITION_FAILED. Used by Subscriber and by
// Publisher.Declare. Default: classic queues.
func WithQuorumQueues() Option {
	return sharedOpt(func(c *config) error { c.quorum = true; return nil })
}

// WithQueueArgs adds arguments to every group queue declaration (for
// example x-max-length, x-message-ttl, x-delivery-limit); the values must
// be types AMQP tables carry (amqp091.Table.Validate). Repeated calls add
// up. Used by Subscriber and by Publisher.Declare. Default: none.
func WithQueueArgs(args amqp091.Table) Option {
	return sharedOpt(func(c *config) error {
		if err := args.Validate(); err != nil {
			return invalid("WithQueueArgs: %v", err)
		}
		if c.queueArgs == nil {
			c.queueArgs = amqp091.Table{}
		}
		for k, v := range args {
			c.queueArgs[k] = v
		}
		return nil
	})
}

// WithDeadLetterExchange declares group queues with the native
// x-dead-letter-exchange argument, and x-dead-letter-routing-key when
// routingKey is given (at most one; names at most 255 bytes, the exchange
// not empty). The broker then dead-letters what it drops itself (expired
// TTL, length overflow, quorum delivery limit). ferry's handler errors
// never reject a message, so they do not reach it: use the retry
// middleware for that. The exchange is not declared by ferry. Used by
// Subscriber and by Publisher.Declare. Default: none.
func WithDeadLetterExchange(exchange string, routingKey ...string) Option {
	return sharedOpt(func(c *config) error {
		switch {
		case exchange == "":
			return invalid("WithDeadLetterExchange(%q): the exchange name is empty", exchange)
		case len(exchange) > maxNameLen:
			return invalid("WithDeadLetterExchange(%q): %d bytes, the limit is %d", exchange, len(exchange), maxNameLen)
		case len(routingKey) > 1:
			return invalid("WithDeadLetterExchange(%q, %q): at most one routing key", exchange, routingKey)
		case len(routingKey) == 1 && len(routingKey[0]) > maxNameLen:
			return invalid("WithDeadLetterExchange(%q, %q): the routing key is %d bytes, the limit is %d", exchange, routingKey[0], len(routingKey[0]), maxNameLen)
		}
		c.dlx = exchange
		if len(routingKey) == 1 {
			c.dlxRoutingKey, c.haveDLXKey = routingKey[0], true
		}
		return nil
	})
}

// WithKeyHeader sets the header that carries Message.Key: a Publisher
// writes it, a Subscriber reads it, so both must agree. Not empty, at most
// 255 bytes. Deliveries without it have an empty Key. Publisher and
// Subscriber. Default: DefaultKeyHeader ("ferry-key").
func WithKeyHeader(name string) Option {
	return sharedOpt(func(c *config) error {
		if name == "" || len(name) > maxNameLen {
			return invalid("WithKeyHeader(%q): want 1 to %d bytes", name, maxNameLen)
		}
		if name == TimeHeader || strings.HasPrefix(name, ShardHeaderPrefix) || strings.HasPrefix(name, "amqp-") {
			return invalid("WithKeyHeader(%q): the name is reserved (%s, %s<bucket>, amqp-* property headers)", name, TimeHeader, ShardHeaderPrefix)
		}
		c.keyHeader = name
		return nil
	})
}

// WithRoutingKey sets how a message's routing key is chosen; f must not
// be nil, and its result must be at most 255 bytes (checked at Publish).
// Publisher only. Default: the message's Key.
func WithRoutingKey(f func(topic string, m *message.Message) string) PublisherOption {
	return pubOpt(func(c *config) error {
		if f == nil {
			return invalid("WithRoutingKey(nil): want a routing key function")
		}
		c.routingKey = f
		return nil
	})
}

// maxMaxPayload is RabbitMQ's hard limit on max_message_size (512 MiB).
const maxMaxPayload = 512 << 20

// WithMaxPayload sets the largest payload Publish accepts, 1 byte to 512
// MiB (RabbitMQ's hard limit); larger payloads fail with
// message.ErrMessageTooLarge before anything is sent. Publisher only.
// Default: DefaultMaxPayload, 16 MiB (RabbitMQ 4.x's max_message_size;
// 3.x allows 128 MiB).
func WithMaxPayload(n int) PublisherOption {
	return pubOpt(func(c *config) error {
		if n < 1 || n > maxMaxPayload {
			return invalid("WithMaxPayload(%d): want 1..%d", n, maxMaxPayload)
		}
		c.maxPayload = n
		return nil
	})
}

// WithDeclareGroups makes the Publisher declare, at its first use of each
// topic (and again after every reconnection), the topology of the given
// groups besides the topic's exchange, as Publisher.Declare(ctx, topic,
// groups...) would: each group's durable queues bound to the exchange,
// with the Publisher's topology options (WithQueueName, WithShards,
// WithQuorumQueues, WithQueueArgs, ...; give it the same ones as the
// groups' Subscribers, or the declaration fails with an error wrapping
// message.ErrInvalidConfig). Messages published before any subscriber of
// these groups started are then kept for them instead of being
// unroutable. Group names must not be empty; calling it again adds groups.
// Publisher only. Default: none (only the exchange is declared).
func WithDeclareGroups(groups ...string) PublisherOption {
	return pubOpt(func(c *config) error {
		for _, g := range groups {
			if g == "" {
				return invalid("WithDeclareGroups(%q): a group name is empty", groups)
			}
		}
		c.declareGroups = append(c.declareGroups, groups...)
		return nil
	})
}

// WithPublishChannels sets how many AMQP channels a Publisher spreads
// concurrent Publish calls over (one batch always goes to one channel, in
// order), 1 to 64. Publisher only. Default: DefaultPublishChannels (1).
func WithPublishChannels(n int) PublisherOption {
	return pubOpt(func(c *config) error {
		if n < 1 || n > 64 {
			return invalid("WithPublishChannels(%d): want 1..64", n)
		}
		c.pubChannels = n
		return nil
	})
}

// WithGroup sets the subscriber's group, not empty: its queues are named
// by WithQueueName(topic, group). Publisher.Declare takes the groups as
// arguments instead. Subscriber only. Default: DefaultGroup ("default").
func WithGroup(name string) SubscriberOption {
	return subOpt(func(c *config) error {
		if name == "" {
			return invalid("WithGroup(%q): the group name is empty", name)
		}
		c.Group = name
		return nil
	})
}

// WithConcurrency sets the maximum number of handlers running at once, 1
// to 65535. Subscriber only. Default: 1.
func WithConcurrency(n int) SubscriberOption {
	return subOpt(func(c *config) error {
		if n < 1 || n > maxPrefetch {
			return invalid("WithConcurrency(%d): want 1..%d", n, maxPrefetch)
		}
		c.Concurrency = n
		return nil
	})
}

// WithPrefetch sets the channel's Qos prefetch count, 1 to 65535: how many
// unacked deliveries the broker hands the subscriber on each queue it
// consumes. Subscriber only. Default: max(DefaultMinPrefetch (128),
// 16×concurrency), at most 65535, so that while one key waits for its
// redelivery backoff (holding its queued deliveries unacked) other keys
// keep flowing.
func WithPrefetch(n int) SubscriberOption {
	return subOpt(func(c *config) error {
		if n < 1 || n > maxPrefetch {
			return invalid("WithPrefetch(%d): want 1..%d", n, maxPrefetch)
		}
		c.prefetch = n
		return nil
	})
}

// WithRedeliveryBackoff bounds the in-process redelivery backoff after a
// handler error: initial after the first failure, doubling, capped at max;
// 0 < initial <= max. Subscriber only. Default: DefaultInitialBackoff
// (100 ms) to DefaultMaxBackoff (10 s).
func WithRedeliveryBackoff(initial, max time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if initial <= 0 || max < initial {
			return invalid("WithRedeliveryBackoff(%v, %v): want 0 < initial <= max", initial, max)
		}
		c.InitialBackoff, c.MaxBackoff = initial, max
		return nil
	})
}

// WithDrainTimeout sets how long graceful shutdown, or a shard queue
// moving to another member (then only that shard's handlers), lets
// in-flight handlers run before cancelling their context; it must be
// positive. Subscriber only. Default: DefaultDrainTimeout (30 s).
func WithDrainTimeout(d time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if d <= 0 {
			return invalid("WithDrainTimeout(%v): want > 0", d)
		}
		c.DrainTimeout = d
		return nil
	})
}

// WithReconnectBackoff bounds the exponential backoff between reconnection
// attempts (adapter.NewBackoff: doubling from initial up to max, ±50 %
// jitter, like the redelivery backoff); 0 < initial <= max. Reconnection never
// gives up; Close stops it. Publisher and Subscriber. Default:
// DefaultInitialBackoff (100 ms) to DefaultMaxBackoff (10 s).
func WithReconnectBackoff(initial, max time.Duration) Option {
	return sharedOpt(func(c *config) error {
		if initial <= 0 || max < initial {
			return invalid("WithReconnectBackoff(%v, %v): want 0 < initial <= max", initial, max)
		}
		c.reconnect = [2]time.Duration{initial, max}
		return nil
	})
}

// WithDialTimeout bounds each connection attempt, the constructor's first
// dial and every reconnection: the TCP connect, the TLS handshake and the
// AMQP handshake together must finish within d (d > 0), or the attempt
// fails with an error that says it timed out. With a dialer of
// WithConfig's amqp091.Config.Dial, the connect is the dialer's business
// and d bounds the handshakes. Publisher and Subscriber. Default:
// DefaultDialTimeout (10 s), or the URL's connection_timeout parameter
// (milliseconds) when it has one.
func WithDialTimeout(d time.Duration) Option {
	return sharedOpt(func(c *config) error {
		if d <= 0 {
			return invalid("WithDialTimeout(%v): want > 0", d)
		}
		c.dialTimeout = d
		return nil
	})
}

// WithLogger sets the adapter's operational log: ferry's events in the one
// format of message.LogEvents, the same on every adapter (connection lost
// and failed reconnection attempts at Warn with the cause, connection
// restored at Info; on a Subscriber each handler error at Debug before the
// message is redelivered; on a Publisher each failed Publish at Debug),
// and what only this adapter has: consumer and group member restarts
// (Warn), shard count disagreements in a group and undecodable deliveries
// (Error). URLs in logs have their password redacted. It means the same as
// kafka.WithLogger and inmem.WithLogger. For handler errors at another
// level use WithObserver(message.LogEvents(l,
// message.LogHandlerErrorsAt(level))). Publisher and Subscriber. Default:
// nil, no logging.
func WithLogger(l *slog.Logger) Option {
	return sharedOpt(func(c *config) error { c.logger = l; return nil })
}

// WithOnStateChange calls f on each connection state change (connected,
// disconnected with the cause, reconnecting, closed). f runs on the
// connection's supervisor goroutine and must not block. Publisher and
// Subscriber. Default: nil, none.
func WithOnStateChange(f func(StateChange)) Option {
	return sharedOpt(func(c *config) error { c.onState = f; return nil })
}

// WithShards sets how many shard queues a group is split into, 1 to
// ShardBuckets (64), evenly spread when it divides 64: at most that many
// members of the group consume at once, each shard by one member at a
// time, in order. It must be the same for every member of a group and for
// Publisher.Declare, and it is fixed when the group is first declared:
// see the package doc ("Changing the shard count"). Used by Subscriber and
// by Publisher.Declare; ignored with WithCompetingConsumers. Default:
// DefaultShards (16).
func WithShards(n int) Option {
	return sharedOpt(func(c *config) error {
		if n < 1 || n > ShardBuckets {
			return invalid("WithShards(%d): want 1..%d", n, ShardBuckets)
		}
		c.shards = n
		return nil
	})
}

// WithCompetingConsumers makes a group one queue (WithQueueName) that every
// member consumes at once, the broker handing deliveries round robin: the
// classic RabbitMQ work queue. It gives up per-key order across members:
// two messages of one key can run at the same time on two members, and
// in any order. Order holds only inside one member. Use it for keyless
// work where order does not matter, or to consume a queue that other
// clients also consume. Used by Subscriber and by Publisher.Declare.
// Default: off (a sharded group, which keeps key order across members).
func WithCompetingConsumers() Option {
	return sharedOpt(func(c *config) error { c.competing = true; return nil })
}

// WithGroupHeartbeat sets how often the members of a sharded group
// announce themselves to each other, 10 ms to 1 minute. A member not heard
// from for four intervals is taken as gone, and its shards are handed to
// the others, so this bounds how long the shards of a crashed member wait
// (a member that leaves gracefully says so and is replaced at once).
// Subscriber only. Default: DefaultGroupHeartbeat (500 ms).
func WithGroupHeartbeat(d time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if d < 10*time.Millisecond || d > time.Minute {
			return invalid("WithGroupHeartbeat(%v): want 10ms..1m", d)
		}
		c.heartbeat = d
		return nil
	})
}
