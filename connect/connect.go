package connect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// URL schemes Open accepts, as Broker.Scheme reports them.
const (
	SchemeKafka = "kafka"
	SchemeAMQP  = "amqp"
	SchemeAMQPS = "amqps"
	SchemeInmem = "inmem"
)

// DefaultKafkaPort is the port of a kafka:// host given without one.
const DefaultKafkaPort = "9092"

// DefaultPingTimeout bounds Open's reachability check of a Kafka cluster
// when ctx has no deadline.
const DefaultPingTimeout = 10 * time.Second

// Broker is an opened broker URL: one publisher, and the subscribers
// NewSubscriber makes, all on the same broker. It is safe for concurrent
// use.
type Broker struct {
	scheme string
	shown  string
	spec   *spec
	cfg    openConfig

	pub      message.Publisher
	kafkaPub *kafka.Publisher
	brokers  []string  // kafka seed brokers
	kgoOpts  []kgo.Opt // kafka: what the URL says about the client (TLS, SASL, client ID)
	amqpPub  *amqp.Publisher
	amqpURL  string // amqp: the URL the adapter dials; holds the password
	mem      *inmem.Broker
	ownMem   bool

	mu     sync.Mutex
	subs   []message.Subscriber
	closed bool
}

// Open checks rawURL and its query parameters, applies opts on top, and
// connects: it makes the Broker's publisher and checks that the broker
// answers (Kafka: a metadata request bounded by ctx, or by
// DefaultPingTimeout if ctx has no deadline; RabbitMQ: the adapter's first
// connection, bounded by its dial timeout). An inmem:// URL makes a new
// in-memory broker, shared by the Broker's publisher and subscribers (see
// WithInmemBroker to share one across Open calls).
//
// A bad URL, an unknown parameter or a bad value fails with an error
// wrapping message.ErrInvalidConfig (and ErrUnknownScheme for the scheme)
// that names what is wrong; no error shows the URL's password.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Broker, error) {
	if ctx == nil {
		return nil, invalid("Open with a nil context")
	}
	r, err := splitURL(rawURL)
	if err != nil {
		return nil, err
	}
	if paramsOf(r.scheme) == nil {
		return nil, &schemeError{fmt.Sprintf("connect: unknown broker URL scheme %q in %s; want %s", r.scheme, r.shown, forms)}
	}
	s, err := parseSpec(r)
	if err != nil {
		return nil, err
	}
	b := &Broker{scheme: r.scheme, shown: r.shown, spec: s}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyOpen(&b.cfg); err != nil {
			return nil, err
		}
	}
	switch r.scheme {
	case SchemeKafka:
		err = b.openKafka(ctx, r)
	case SchemeAMQP, SchemeAMQPS:
		err = b.openAMQP(r)
	case SchemeInmem:
		err = b.openInmem(r)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Broker) openKafka(ctx context.Context, r *rawURL) error {
	s := b.spec
	if r.path != "" && r.path != "/" {
		return invalid("%s: a kafka:// URL has no path; want %s", r.shown, forms)
	}
	for _, h := range strings.Split(r.hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return invalid("%s: an empty host in the host list (want kafka://host:port[,host:port...])", r.shown)
		}
		if _, _, err := net.SplitHostPort(h); err != nil && strings.Contains(err.Error(), "missing port") {
			h = net.JoinHostPort(strings.Trim(h, "[]"), DefaultKafkaPort)
		}
		b.brokers = append(b.brokers, h)
	}
	switch {
	case r.hasUser && s.sasl == "":
		return invalid("%s: credentials in a kafka:// URL need sasl=plain, sasl=scram-sha-256 or sasl=scram-sha-512", r.shown)
	case !r.hasUser && s.sasl != "":
		return invalid("%s: sasl=%s needs user:password@ in the URL", r.shown, s.sasl)
	}
	switch s.sasl {
	case "plain":
		b.kgoOpts = append(b.kgoOpts, kgo.SASL(plain.Auth{User: r.user, Pass: r.password}.AsMechanism()))
	case "scram-sha-256":
		b.kgoOpts = append(b.kgoOpts, kgo.SASL(scram.Auth{User: r.user, Pass: r.password}.AsSha256Mechanism()))
	case "scram-sha-512":
		b.kgoOpts = append(b.kgoOpts, kgo.SASL(scram.Auth{User: r.user, Pass: r.password}.AsSha512Mechanism()))
	}
	if s.tls {
		b.kgoOpts = append(b.kgoOpts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if s.clientID != "" {
		b.kgoOpts = append(b.kgoOpts, kgo.ClientID(s.clientID))
	}
	popts := []kafka.PublisherOption{kafka.WithOptions(b.kafkaShared()...)}
	if s.deliveryTimeout > 0 {
		popts = append(popts, kafka.WithDeliveryTimeout(s.deliveryTimeout))
	}
	popts = append(popts, b.cfg.kafkaPub...)
	pub, err := kafka.NewPublisher(b.brokers, popts...)
	if err != nil {
		return b.adapterErr(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPingTimeout)
		defer cancel()
	}
	if err := pub.Client().Ping(ctx); err != nil {
		_ = pub.Close()
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("connect: cannot reach Kafka at %s: %w", b.shown, err)
	}
	b.kafkaPub, b.pub = pub, pub
	return nil
}

// kafkaShared are the kafka options of both sides: the URL's, then
// WithKafka's.
func (b *Broker) kafkaShared() []kafka.Option {
	s := b.spec
	var o []kafka.Option
	if len(b.kgoOpts) > 0 {
		o = append(o, kafka.WithClientOptions(b.kgoOpts...))
	}
	if s.partitions > 0 || s.haveReplication {
		p, rf := int32(kafka.DefaultPartitions), int16(kafka.DefaultReplicationFactor)
		if s.partitions > 0 {
			p = int32(s.partitions)
		}
		if s.haveReplication {
			rf = int16(s.replication)
		}
		o = append(o, kafka.WithTopicCreation(p, rf))
	}
	if s.createTopics != nil && !*s.createTopics {
		o = append(o, kafka.WithoutTopicCreation())
	}
	return append(o, b.cfg.kafka...)
}

func (b *Broker) kafkaSubscriber(extra []kafka.SubscriberOption) []kafka.SubscriberOption {
	s := b.spec
	o := []kafka.SubscriberOption{kafka.WithOptions(b.kafkaShared()...)}
	if s.group != "" {
		o = append(o, kafka.WithGroup(s.group))
	}
	if s.concurrency > 0 {
		o = append(o, kafka.WithConcurrency(s.concurrency))
	}
	if s.maxPending > 0 {
		o = append(o, kafka.WithMaxPending(s.maxPending))
	}
	if s.redeliveryLo > 0 {
		o = append(o, kafka.WithRedeliveryBackoff(s.redeliveryLo, s.redeliveryHi))
	}
	if s.drainTimeout > 0 {
		o = append(o, kafka.WithDrainTimeout(s.drainTimeout))
	}
	switch s.start {
	case "earliest":
		o = append(o, kafka.WithStartOffset(kafka.StartEarliest))
	case "latest":
		o = append(o, kafka.WithStartOffset(kafka.StartLatest))
	}
	if s.commitInterval > 0 {
		o = append(o, kafka.WithCommitInterval(s.commitInterval))
	}
	o = append(o, b.cfg.sub.kafka...)
	return append(o, extra...)
}

func (b *Broker) openAMQP(r *rawURL) error {
	s := b.spec
	// The adapter's URL: the URL without this package's parameters.
	u := r.scheme + "://"
	if r.hasUser {
		u += r.userRaw + "@"
	}
	u += r.hosts + r.path
	if len(s.native) > 0 {
		q := make([]string, 0, len(s.native))
		for _, k := range s.native {
			q = append(q, k+"="+queryEscape(r.query.Get(k)))
		}
		u += "?" + strings.Join(q, "&")
	}
	b.amqpURL = u
	popts := []amqp.PublisherOption{amqp.WithOptions(b.amqpShared()...)}
	if s.maxPayload > 0 {
		popts = append(popts, amqp.WithMaxPayload(s.maxPayload))
	}
	if s.pubChannels > 0 {
		popts = append(popts, amqp.WithPublishChannels(s.pubChannels))
	}
	if len(s.declareGroups) > 0 {
		popts = append(popts, amqp.WithDeclareGroups(s.declareGroups...))
	}
	popts = append(popts, b.cfg.amqpPub...)
	pub, err := amqp.NewPublisher(u, popts...)
	if err != nil {
		if !errors.Is(err, message.ErrInvalidConfig) {
			return fmt.Errorf("connect: cannot reach RabbitMQ: %w", err) // the adapter's error shows the redacted URL
		}
		return b.adapterErr(err)
	}
	b.amqpPub, b.pub = pub, pub
	return nil
}

func (b *Broker) amqpShared() []amqp.Option {
	s := b.spec
	var o []amqp.Option
	if s.shards > 0 {
		o = append(o, amqp.WithShards(s.shards))
	}
	if s.competing {
		o = append(o, amqp.WithCompetingConsumers())
	}
	if s.quorum {
		o = append(o, amqp.WithQuorumQueues())
	}
	if s.exchangeKind != "" {
		o = append(o, amqp.WithExchangeKind(s.exchangeKind))
	}
	if s.keyHeader != "" {
		o = append(o, amqp.WithKeyHeader(s.keyHeader))
	}
	if s.dialTimeout > 0 {
		o = append(o, amqp.WithDialTimeout(s.dialTimeout))
	}
	if s.reconnectLo > 0 {
		o = append(o, amqp.WithReconnectBackoff(s.reconnectLo, s.reconnectHi))
	}
	return append(o, b.cfg.amqp...)
}

func (b *Broker) amqpSubscriber(extra []amqp.SubscriberOption) []amqp.SubscriberOption {
	s := b.spec
	o := []amqp.SubscriberOption{amqp.WithOptions(b.amqpShared()...)}
	if s.group != "" {
		o = append(o, amqp.WithGroup(s.group))
	}
	if s.concurrency > 0 {
		o = append(o, amqp.WithConcurrency(s.concurrency))
	}
	if s.prefetch > 0 {
		o = append(o, amqp.WithPrefetch(s.prefetch))
	}
	if s.redeliveryLo > 0 {
		o = append(o, amqp.WithRedeliveryBackoff(s.redeliveryLo, s.redeliveryHi))
	}
	if s.drainTimeout > 0 {
		o = append(o, amqp.WithDrainTimeout(s.drainTimeout))
	}
	if s.groupHeartbeat > 0 {
		o = append(o, amqp.WithGroupHeartbeat(s.groupHeartbeat))
	}
	o = append(o, b.cfg.sub.amqp...)
	return append(o, extra...)
}

func (b *Broker) openInmem(r *rawURL) error {
	s := b.spec
	if r.hasUser || r.hosts != "" || (r.path != "" && r.path != "/") {
		return invalid("%s: an inmem:// URL has no user, host or path (in-memory brokers are not shared by name: use one Open, or WithInmemBroker); want inmem://[?param=value&...]", r.shown)
	}
	var bopts []inmem.BrokerOption
	if s.partitions > 0 {
		bopts = append(bopts, inmem.WithPartitions(s.partitions))
	}
	if s.haveRetention || s.haveRetentionAg {
		bopts = append(bopts, inmem.WithRetention(s.retention, s.retentionAge))
	}
	bopts = append(bopts, b.cfg.inmem...)
	mem := b.cfg.mem
	if mem != nil && len(bopts) > 0 {
		return invalid("%s: WithInmemBroker with partitions, retention, retention_age or WithInmem: those configure a new broker", r.shown)
	}
	if mem == nil {
		var err error
		if mem, err = inmem.NewBroker(bopts...); err != nil {
			return b.adapterErr(err)
		}
		b.ownMem = true
	}
	pub, err := inmem.NewPublisher(mem)
	if err != nil {
		if b.ownMem {
			_ = mem.Close()
		}
		return b.adapterErr(err)
	}
	b.mem, b.pub = mem, pub
	return nil
}

func (b *Broker) inmemSubscriber(extra []inmem.SubscriberOption) []inmem.SubscriberOption {
	s := b.spec
	var o []inmem.SubscriberOption
	if s.group != "" {
		o = append(o, inmem.WithGroup(s.group))
	}
	if s.concurrency > 0 {
		o = append(o, inmem.WithConcurrency(s.concurrency))
	}
	if s.maxPending > 0 {
		o = append(o, inmem.WithMaxPending(s.maxPending))
	}
	if s.redeliveryLo > 0 {
		o = append(o, inmem.WithRedeliveryBackoff(s.redeliveryLo, s.redeliveryHi))
	}
	if s.drainTimeout > 0 {
		o = append(o, inmem.WithDrainTimeout(s.drainTimeout))
	}
	o = append(o, b.cfg.sub.inmem...)
	return append(o, extra...)
}

// adapterErr wraps an adapter's error. The amqp adapter's errors already
// show the redacted URL; the others get it added.
func (b *Broker) adapterErr(err error) error {
	if b.scheme == SchemeAMQP || b.scheme == SchemeAMQPS {
		return fmt.Errorf("connect: %w", err)
	}
	return fmt.Errorf("connect: %s: %w", b.shown, err)
}

// queryEscape escapes a query value as url.QueryEscape does.
func queryEscape(v string) string { return strings.ReplaceAll(url.QueryEscape(v), "+", "%20") }

// Scheme returns the URL's scheme: SchemeKafka, SchemeAMQP, SchemeAMQPS
// or SchemeInmem.
func (b *Broker) Scheme() string { return b.scheme }

// String returns the URL as given, with its password replaced by "xxxxx".
func (b *Broker) String() string { return b.shown }

// Publisher returns the Broker's publisher. Broker.Close closes it.
func (b *Broker) Publisher() message.Publisher { return b.pub }

// NewSubscriber returns a new subscriber on the broker, configured by the
// URL's parameters, then the SharedOptions given to Open, then opts.
// Broker.Close closes it. A bad option fails with an error wrapping
// message.ErrInvalidConfig; after Close it fails with message.ErrClosed.
func (b *Broker) NewSubscriber(opts ...SubscriberOption) (message.Subscriber, error) {
	var c subConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applySubscriber(&c); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("connect: NewSubscriber: %w", message.ErrClosed)
	}
	var (
		sub message.Subscriber
		err error
	)
	switch b.scheme {
	case SchemeKafka:
		sub, err = kafka.NewSubscriber(b.brokers, b.kafkaSubscriber(c.kafka)...)
	case SchemeAMQP, SchemeAMQPS:
		sub, err = amqp.NewSubscriber(b.amqpURL, b.amqpSubscriber(c.amqp)...)
	default:
		sub, err = inmem.NewSubscriber(b.mem, b.inmemSubscriber(c.inmem)...)
	}
	if err != nil {
		return nil, b.adapterErr(err)
	}
	b.subs = append(b.subs, sub)
	return sub, nil
}

// Declare makes topic ready to keep messages for groups whose subscribers
// have not started yet. On RabbitMQ it declares the topic's exchange and
// the groups' queues, with the Broker's topology (amqp.Publisher.Declare);
// a message published while no queue is bound is unroutable. Kafka keeps
// messages for groups that join later (they start at the earliest offset
// by default), so there it does nothing; so does inmem, which keeps them
// only with the retention parameter.
func (b *Broker) Declare(ctx context.Context, topic string, groups ...string) error {
	if b.amqpPub == nil {
		return nil
	}
	if err := b.amqpPub.Declare(ctx, topic, groups...); err != nil {
		return fmt.Errorf("connect: declare %q for groups %q: %w", topic, groups, err)
	}
	return nil
}

// KafkaClient returns the Kafka publisher's franz-go client, for admin
// requests (kadm.NewClient); nil unless the URL is kafka://.
func (b *Broker) KafkaClient() *kgo.Client {
	if b.kafkaPub == nil {
		return nil
	}
	return b.kafkaPub.Client()
}

// KafkaClientOptions returns the franz-go options that connect to the
// URL's cluster (seed brokers, and TLS, SASL and client ID when the URL
// says so), for a client of your own such as a consumer without a group;
// nil unless the URL is kafka://. Options given with WithKafka are not
// included.
func (b *Broker) KafkaClientOptions() []kgo.Opt {
	if b.scheme != SchemeKafka {
		return nil
	}
	return append([]kgo.Opt{kgo.SeedBrokers(b.brokers...)}, b.kgoOpts...)
}

// AMQPURL returns the URL the amqp adapter dials (this package's
// parameters removed), for a connection of your own (amqp091.Dial); ""
// unless the URL is amqp:// or amqps://. It holds the password: never
// print it; String is the printable form.
func (b *Broker) AMQPURL() string { return b.amqpURL }

// Inmem returns the in-memory broker; nil unless the URL is inmem://.
func (b *Broker) Inmem() *inmem.Broker { return b.mem }

// Close closes the subscribers made by NewSubscriber, the publisher and,
// unless it came from WithInmemBroker, the in-memory broker. It is safe
// to call more than once; later calls return nil.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if err := b.pub.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
		errs = append(errs, err)
	}
	if b.ownMem {
		if err := b.mem.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
