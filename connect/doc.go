// Package connect opens a broker from a URL, so that a service takes its
// broker from configuration (a flag, an environment variable) and runs
// unchanged on Kafka, RabbitMQ and the in-memory broker:
//
//	b, err := connect.Open(ctx, os.Getenv("BROKER_URL"))
//	...
//	defer b.Close()
//	pub := b.Publisher()
//	sub, err := b.NewSubscriber(connect.WithGroup("billing"))
//
// # URLs
//
//	kafka://h1:9092,h2:9092?partitions=12         Kafka seed brokers (port 9092 if none)
//	kafka://user:pass@h1:9093?sasl=scram-sha-512&tls=true
//	amqp://user:pass@host:5672/vhost?prefetch=64  RabbitMQ (amqps:// for TLS)
//	inmem://?partitions=4&retention=1000          a new in-memory broker
//
// The query parameters set the common options of the adapters
// (kafka/options.go, amqp/options.go, inmem/options.go); a parameter that
// is not given leaves the adapter's default, which each adapter option's
// doc states. Durations are Go durations (500ms, 10s, 1m30s); booleans
// are true or false.
//
// Every scheme, for the subscribers NewSubscriber makes:
//
//	group               WithGroup                       ("default")
//	concurrency         WithConcurrency                 (1)
//	redelivery_initial  WithRedeliveryBackoff, initial  (100ms)
//	redelivery_max      WithRedeliveryBackoff, max      (10s)
//	drain_timeout       WithDrainTimeout                (30s)
//
// kafka:// (kafka.With...):
//
//	partitions          WithTopicCreation, partitions   (8)
//	replication         WithTopicCreation, replication  (-1: the broker's default)
//	create_topics       false: WithoutTopicCreation     (true)
//	delivery_timeout    WithDeliveryTimeout             (30s)
//	max_pending         WithMaxPending                  (4096)
//	start               WithStartOffset: earliest|latest (earliest)
//	commit_interval     WithCommitInterval              (1s)
//	client_id           kgo.ClientID                    (franz-go's "kgo")
//	tls                 true: TLS 1.2+ with the system roots (false)
//	sasl                plain|scram-sha-256|scram-sha-512 with the URL's user:password (none)
//
// amqp:// and amqps:// (amqp.With...):
//
//	prefetch            WithPrefetch                    (16 × concurrency, 128..65535)
//	shards              WithShards                      (16)
//	competing           true: WithCompetingConsumers    (false)
//	quorum              true: WithQuorumQueues          (false)
//	exchange_kind       WithExchangeKind: topic|fanout|direct (topic)
//	key_header          WithKeyHeader                   ("ferry-key")
//	max_payload         WithMaxPayload                  (16 MiB)
//	publish_channels    WithPublishChannels             (1)
//	declare_groups      WithDeclareGroups, comma-separated (none)
//	dial_timeout        WithDialTimeout                 (10s)
//	reconnect_initial   WithReconnectBackoff, initial   (100ms)
//	reconnect_max       WithReconnectBackoff, max       (10s)
//	group_heartbeat     WithGroupHeartbeat              (500ms)
//
// and amqp091's own URI parameters (heartbeat, connection_timeout,
// channel_max, frame_max, auth_mechanism, certfile, keyfile, cacertfile,
// server_name_indication), passed on to the client, which checks them.
//
// inmem:// (inmem.With...):
//
//	partitions          WithPartitions                  (8)
//	retention           WithRetention, count            (0)
//	retention_age       WithRetention, age              (0)
//	max_pending         WithMaxPending                  (4096)
//
// Params lists them per scheme.
//
// # Programmatic options on top
//
// What a URL cannot carry (a logger, a TLS config, franz-go or amqp091
// settings, queue arguments) is given as options, applied after the URL's
// parameters so that they win: WithKafka, WithKafkaPublisher,
// WithKafkaSubscriber, WithAMQP, WithAMQPPublisher, WithAMQPSubscriber,
// WithInmem, WithInmemSubscriber, and WithGroup and WithConcurrency for
// every adapter. An option for another adapter than the URL's is ignored,
// so one option list serves every URL the service may be given.
//
// # The in-memory broker
//
// An in-memory broker lives in one process and has no address, so
// inmem:// cannot name one: each Open of an inmem:// URL makes a new
// broker, and its publisher and the subscribers of the same Broker share
// it. To share one across Open calls (a test that opens the "same" URL
// twice), create it with inmem.NewBroker and pass it with
// WithInmemBroker. There is deliberately no registry of named brokers:
// that would be global state, and two tests in one process would see each
// other's messages.
//
// # Errors
//
// A bad URL fails Open with an error wrapping message.ErrInvalidConfig
// that says what is wrong: an unknown scheme (also ErrUnknownScheme), an
// unknown parameter (the error lists the known ones), a parameter given
// twice, a bad value (the error says what the parameter takes), or a
// value the adapter rejects (its error, naming its option). No error
// shows the URL's password: they show the URL with the password replaced
// by "xxxxx" (Redact, Broker.String), or, for a URL too malformed to
// split safely, only what is wrong with it. A broker that cannot be
// reached fails Open with an error naming the redacted URL.
//
// # Why one package that imports every adapter, not a registry
//
// The schemes are a closed set, the three adapters of this module, whose
// dependencies go.mod requires anyway. Importing them here, explicitly,
// means a URL read from configuration works without the service
// remembering a blank import per scheme (database/sql's registry fails at
// run time, "unknown driver", when one is missing), there is no init-time
// registration and no global mutable table, and Open's option types can
// name each adapter's options with compile-time checking (WithKafka takes
// kafka.Option). The cost is a binary that links franz-go and amqp091-go
// even if it only uses one of them (a few MB); a program that wants only
// one adapter calls that adapter's constructors directly, as before.
package connect
