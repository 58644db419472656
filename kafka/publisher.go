package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Record header names ferry writes. Other Kafka clients read them as plain
// UTF-8 record headers.
const (
	// HeaderID carries Message.ID.
	HeaderID = "ferry-id"
)

// Publisher publishes messages to Kafka topics. It is safe for concurrent
// use; concurrent Publish calls share franz-go's batches.
type Publisher struct {
	cl       *kgo.Client
	topics   *topics
	maxBatch func(string) int32

	deliveryTimeout time.Duration    // WithDeliveryTimeout
	obs             message.Observer // WithObserver, WithLogger; nil without

	mu     sync.RWMutex // held for reading by Publish, for writing by Close
	closed bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher for the cluster reachable through the
// given seed brokers, each "host:port" (an empty or malformed address is an
// error wrapping message.ErrInvalidConfig that names it). It uses franz-go's idempotent producer
// with acks=all, its batching and lingering (10ms), and its default
// partitioner, which puts a key on the same partition as the Java client
// does (murmur2), wrapped to honour adapter.WithPartition (see the package
// doc). It does not connect until the first Publish.
//
// It takes the shared options (WithClientOptions, WithTopicCreation,
// WithoutTopicCreation, WithLogger, WithOptions); a Subscriber option
// does not compile here. A bad option value fails with an error wrapping
// message.ErrInvalidConfig that names the option.
func NewPublisher(brokers []string, opts ...PublisherOption) (*Publisher, error) {
	if err := validateBrokers(brokers); err != nil {
		return nil, err
	}
	c, err := newPublisherConfig(opts)
	if err != nil {
		return nil, err
	}
	// franz-go's default partitioner, wrapped for adapter.WithPartition
	// (partition.go).
	pin := &pinPartitioner{inner: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(pin),
		// A Publish ends with its ctx (doc.go): records in flight when it
		// ends are failed rather than waited for (a retry of them may be
		// written twice, with the same ID), and a retry that needs new
		// metadata (a leader moved) waits at most a second for it, not
		// franz-go's default 5 s.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.MetadataMinAge(publisherMetadataMinAge),
	}, append(connHooks(c.obs, "publisher"), c.clientOpts...)...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w: seed brokers or WithClientOptions: %w", message.ErrInvalidConfig, err)
	}
	if own, ok := cl.OptValue(kgo.RecordPartitioner).(kgo.Partitioner); ok && own != kgo.Partitioner(pin) {
		// WithClientOptions set a partitioner of the user's: wrap that
		// one instead (the client has not connected yet).
		cl.Close()
		pin.inner = own
		if cl, err = kgo.NewClient(append(kopts, kgo.RecordPartitioner(pin))...); err != nil {
			return nil, fmt.Errorf("kafka: %w: seed brokers or WithClientOptions: %w", message.ErrInvalidConfig, err)
		}
	}
	p := &Publisher{
		cl:     cl,
		topics: newTopics(kadm.NewClient(cl), &c),
	}
	p.deliveryTimeout = c.deliveryTimeout
	p.obs = c.obs
	p.maxBatch, _ = cl.OptValue(kgo.ProducerBatchMaxBytesFn).(func(string) int32)
	if p.maxBatch == nil {
		p.maxBatch = func(string) int32 { return 1000012 }
	}
	return p, nil
}

// Client returns the underlying franz-go client, for metrics or admin calls.
// Do not close it; Close the Publisher instead.
func (p *Publisher) Client() *kgo.Client { return p.cl }

// Publish sends msgs to topic and returns when the broker has acknowledged
// every one of them (acks=all). It fills in empty IDs and zero Times first.
//
// Before anything is sent, the topic name is checked against Kafka's rules
// (message.ErrInvalidTopic), every message must be non-nil
// (message.ErrInvalidMessage), and each record's encoded size must fit the
// producer's batch limit, kgo.ProducerBatchMaxBytes, default 1,000,012 bytes
// (message.ErrMessageTooLarge); if any check fails nothing is sent. A
// missing topic is created (see WithTopicCreation) or reported as
// message.ErrTopicNotFound. Until a first record of a topic is
// acknowledged (for at most a minute after this Publisher found or created
// it), records a partition leader refuses with UNKNOWN_TOPIC_OR_PARTITION
// (its metadata has not caught up with a just-created topic yet) are
// produced again, in order, with a backoff, until they go through or ctx
// ends. After that, the answer means the topic was deleted, and Publish
// reports message.ErrTopicNotFound.
//
// On failure of some records the error is a *message.PublishError listing
// them; each entry's error wraps the franz-go/kerr error and, where one
// applies, a message sentinel. If ctx ends before any record was sent,
// ctx.Err() is returned, as is unless ctx's deadline passed and the
// cluster says why the records waited: then it is wrapped with an error
// naming the partition and wrapping kerr.NotEnoughReplicas (fewer in-sync
// replicas than min.insync.replicas) or kerr.LeaderNotAvailable, found by
// asking the cluster for at most a second after ctx ended. An already
// cancelled ctx publishes nothing.
//
// When ctx has no deadline, the call is bounded by WithDeliveryTimeout
// (default DefaultDeliveryTimeout, 30 s): a broker that accepts
// connections and never answers fails it with an error naming
// WithDeliveryTimeout that matches context.DeadlineExceeded (records
// already buffered may still be delivered by franz-go afterwards, as with
// any ended ctx). A ctx with a deadline is used as it is. A nil ctx (a
// programmer error by Go convention) and a Publisher not made by
// NewPublisher get an error wrapping message.ErrInvalidConfig, not a panic.
func (p *Publisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) (err error) {
	if ctx == nil {
		return fmt.Errorf("kafka: publish %q: %w: nil context", topic, message.ErrInvalidConfig)
	}
	if p.cl == nil {
		return fmt.Errorf("kafka: publish %q: %w: the Publisher was not made by NewPublisher", topic, message.ErrInvalidConfig)
	}
	if o := p.obs; o != nil {
		start := time.Now()
		defer func() { observePublish(ctx, o, topic, msgs, start, err) }()
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("kafka: publish %q: %w", topic, message.ErrClosed)
	}
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if err := p.check(topic, msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err // a cancelled ctx publishes nothing
	}
	if err := adapter.Prepare(topic, msgs); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		// No deadline of the caller's: bound the wait for the brokers
		// (WithDeliveryTimeout), so a broker that never answers cannot
		// hold the call for franz-go's retry timeouts or forever.
		bctx, cancel := context.WithTimeout(ctx, p.deliveryTimeout)
		defer cancel()
		if err := p.publish(bctx, topic, msgs); err != nil {
			var pe *message.PublishError
			if ctx.Err() == nil && bctx.Err() != nil && !errors.As(err, &pe) {
				// Our bound ended the call, not the caller's ctx.
				if isCtxErr(err) {
					return fmt.Errorf("kafka: publish %q: no answer from the brokers within %v (WithDeliveryTimeout): %w", topic, p.deliveryTimeout, err)
				}
				return fmt.Errorf("kafka: publish %q: no answer from the brokers within %v (WithDeliveryTimeout): %w: %w", topic, p.deliveryTimeout, context.DeadlineExceeded, err)
			}
			return err
		}
		return nil
	}
	return p.publish(ctx, topic, msgs)
}

// publish is Publish once msgs are checked and prepared.
func (p *Publisher) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	if err := p.topics.ensure(ctx, topic); err != nil {
		return err
	}

	// ProduceSync, not Produce and a wait: it stops the linger of the
	// partitions it wrote to once the records are buffered, so a caller
	// waiting for its acks does not also wait out kgo.ProducerLinger.
	// Concurrent callers still share batches while requests are in flight.
	errs := p.produce(ctx, topic, msgs, nil)
	if errs == nil {
		p.topics.proven(topic)
		return nil
	}
	// A just-created topic can be unknown to the broker that leads a
	// partition for a moment (its metadata catches up after CreateTopics
	// returned), and franz-go fails records after a few
	// UNKNOWN_TOPIC_OR_PARTITION answers (kgo.UnknownTopicRetries). Such
	// records were not written: while no record of the topic has been
	// acknowledged yet, produce them again, in their order, with a
	// backoff, until they go through, another error comes, the topic is no
	// longer fresh or ctx ends. A topic that took records before is not
	// retried here: it was deleted, and the caller hears so
	// (ErrTopicNotFound).
	var bo *backoff.ExponentialBackOff
	for p.topics.fresh(topic) && onlyUnknownTopic(errs) {
		if bo == nil {
			bo = adapter.NewBackoff(unknownTopicBackoff, unknownTopicMaxBackoff)
		}
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return p.failed(ctx, topic, msgs, errs)
		case <-t.C:
		}
		if errs = p.produce(ctx, topic, msgs, errs); errs == nil {
			p.topics.proven(topic)
			return nil
		}
	}
	if slices.Contains(errs, nil) {
		p.topics.proven(topic)
	}
	return p.failed(ctx, topic, msgs, errs)
}

// How long Publish waits before producing again records that a just-created
// topic's partition leader did not know yet (doubling up to the maximum).
const (
	unknownTopicBackoff    = 50 * time.Millisecond
	unknownTopicMaxBackoff = time.Second
)

// produce sends msgs (only those whose entry in retry is non-nil, when retry
// is not nil) and returns the error of each message by index, or nil when
// all of them were acknowledged.
func (p *Publisher) produce(ctx context.Context, topic string, msgs []*message.Message, retry []error) []error {
	send, index := msgs, []int(nil)
	if retry != nil {
		send = make([]*message.Message, 0, len(msgs))
		for i, err := range retry {
			if err != nil {
				send = append(send, msgs[i])
				index = append(index, i)
			}
		}
	}
	recs := toRecords(topic, send)
	var errs []error
	for _, r := range p.cl.ProduceSync(ctx, recs...) {
		if r.Err == nil {
			continue
		}
		if errs == nil {
			errs = make([]error, len(msgs))
		}
		// Results come in completion order: find the record's index
		// (failures are rare, so a scan is fine).
		for i, rec := range recs {
			if rec == r.Record {
				if index != nil {
					i = index[i]
				}
				errs[i] = r.Err
				break
			}
		}
	}
	return errs
}

// onlyUnknownTopic reports whether every failure in errs is
// UNKNOWN_TOPIC_OR_PARTITION or UNKNOWN_TOPIC_ID.
func onlyUnknownTopic(errs []error) bool {
	for _, err := range errs {
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) && !errors.Is(err, kerr.UnknownTopicID) {
			return false
		}
	}
	return true
}

// check validates msgs without changing them.
func (p *Publisher) check(topic string, msgs []*message.Message) error {
	limit := int(p.maxBatch(topic))
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("kafka: publish %q: %w: message #%d of %d is nil", topic, message.ErrInvalidMessage, i, len(msgs))
		}
		if n := encodedSize(m); n > limit {
			return fmt.Errorf("kafka: publish %q: %w: message #%d (id %q) encodes to about %d bytes, over the producer's limit of %d bytes (kgo.ProducerBatchMaxBytes; the broker's max.message.bytes must allow it too)",
				topic, message.ErrMessageTooLarge, i, m.ID, n, limit)
		}
	}
	return nil
}

// recordBatchOverhead is the fixed size of a Kafka v2 record batch header.
const recordBatchOverhead = 61

// idLen is the length of an ID message.NewID generates.
const idLen = 36

// encodedSize returns an upper bound of the size of a one-record batch
// holding m (varints counted at their widest).
func encodedSize(m *message.Message) int {
	id := len(m.ID)
	if id == 0 {
		id = idLen
	}
	n := recordBatchOverhead +
		5 + 1 + 10 + 5 + // length, attributes, timestamp delta, offset delta
		5 + len(m.Key) + 5 + len(m.Payload) + 5 + // key, value, header count
		5 + len(HeaderID) + 5 + id
	for k, v := range m.Headers {
		n += 5 + len(k) + 5 + len(v)
	}
	return n
}

// toRecords maps messages to records: Key to the record key (nil when
// empty, so franz-go's sticky partitioner spreads keyless records), Payload
// to the value, Time to the timestamp, ID to the HeaderID header and
// Headers to record headers. It allocates a few times per batch rather
// than several times per message: the records, their ID headers and the
// bytes of their keys and IDs each share one backing array (franz-go only
// reads them), and a single message takes one allocation.
func toRecords(topic string, msgs []*message.Message) []*kgo.Record {
	if len(msgs) == 1 && len(msgs[0].Key)+len(msgs[0].ID) <= len(single{}.buf) {
		one := &single{}
		one.out[0] = &one.rec
		fillRecord(&one.rec, &one.hdr, topic, msgs[0], one.buf[:0])
		return one.out[:]
	}
	n := 0
	for _, m := range msgs {
		n += len(m.Key) + len(m.ID)
	}
	buf := make([]byte, 0, n)
	recs := make([]recordWithID, len(msgs))
	out := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		r := &recs[i]
		buf = fillRecord(&r.rec, &r.hdr, topic, m, buf)
		out[i] = &r.rec
	}
	return out
}

// recordWithID is a record and the array of its ID header.
type recordWithID struct {
	rec kgo.Record
	hdr [1]kgo.RecordHeader
}

// single is everything a one-message Publish hands franz-go.
type single struct {
	recordWithID
	out [1]*kgo.Record
	buf [96]byte // the key and ID bytes
}

// fillRecord maps m to r, with hdr holding its ID header, appending the bytes
// of the key and ID to buf (which must have room for them, so that earlier
// records' slices of it stay valid) and returning it.
func fillRecord(r *kgo.Record, hdr *[1]kgo.RecordHeader, topic string, m *message.Message, buf []byte) []byte {
	bytesOf := func(s string) []byte {
		start := len(buf)
		buf = append(buf, s...)
		return buf[start:len(buf):len(buf)]
	}
	r.Topic, r.Value, r.Timestamp = topic, m.Payload, m.Time
	if m.Key != "" {
		r.Key = bytesOf(m.Key)
	}
	hdr[0] = kgo.RecordHeader{Key: HeaderID, Value: bytesOf(m.ID)}
	r.Headers = hdr[:] // capacity 1: user headers go to an array of their own
	if len(m.Headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, 1, 1+len(m.Headers))
		r.Headers[0] = hdr[0]
		for k, v := range m.Headers {
			if k == HeaderID {
				continue // ours: Message.ID wins
			}
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	return buf
}

// failed builds the error of a Publish call from per-message errors (nil
// entries succeeded).
func (p *Publisher) failed(ctx context.Context, topic string, msgs []*message.Message, errs []error) error {
	pe := &message.PublishError{Topic: topic, Total: len(msgs)}
	allCtx := true
	for i, err := range errs {
		if err == nil {
			continue
		}
		if !isCtxErr(err) {
			allCtx = false
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			p.topics.forget(topic)
		}
		pe.Failed = append(pe.Failed, message.FailedMessage{Index: i, Message: msgs[i], Err: publishErr(topic, err)})
	}
	if allCtx && len(pe.Failed) == len(msgs) && ctx.Err() != nil {
		// franz-go retries a retriable broker answer (NOT_ENOUGH_REPLICAS,
		// no leader) until the ctx ends and then fails the records with
		// ctx.Err() alone: ask the cluster what held them.
		// Only for a deadline: a cancelled ctx (a shutdown) wants no
		// extra second.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			if cause := p.stallCause(topic); cause != nil {
				return fmt.Errorf("kafka: publish %q: %w: %w", topic, ctx.Err(), cause)
			}
		}
		return ctx.Err()
	}
	return pe
}

// publisherMetadataMinAge is the publisher's kgo.MetadataMinAge: how soon
// after a refresh franz-go may refresh metadata again when a partition's
// leader or a topic is missing.
const publisherMetadataMinAge = time.Second

// stallCauseTimeout bounds stallCause: how much longer than its ctx a
// Publish that timed out may take to say why.
const stallCauseTimeout = time.Second

// stallCause asks the cluster (within stallCauseTimeout) whether a
// partition of topic cannot take acks=all records now: one without a
// leader, or with fewer in-sync replicas than the topic's
// min.insync.replicas (the broker then answers NOT_ENOUGH_REPLICAS, which
// franz-go retries until the ctx ends). It returns an error wrapping
// kerr.LeaderNotAvailable or kerr.NotEnoughReplicas that names the
// partition, or nil when it finds neither or cannot ask.
func (p *Publisher) stallCause(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), stallCauseTimeout)
	defer cancel()
	adm := kadm.NewClient(p.cl)
	md, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil
	}
	d, ok := md[topic]
	if !ok || d.Err != nil {
		return nil
	}
	minISR := 1
	if rcs, err := adm.DescribeTopicConfigs(ctx, topic); err == nil {
		if rc, err := rcs.On(topic, nil); err == nil {
			for _, c := range rc.Configs {
				if c.Key == "min.insync.replicas" && c.Value != nil {
					if n, err := strconv.Atoi(*c.Value); err == nil {
						minISR = n
					}
				}
			}
		}
	}
	for _, part := range d.Partitions.Sorted() {
		switch {
		case part.Leader < 0:
			return fmt.Errorf("partition %d has no leader: %w", part.Partition, kerr.LeaderNotAvailable)
		case len(part.ISR) < minISR:
			return fmt.Errorf("partition %d has %d in-sync replicas of the %d min.insync.replicas asks for (acks=all): %w",
				part.Partition, len(part.ISR), minISR, kerr.NotEnoughReplicas)
		}
	}
	return nil
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// publishErr wraps a record's error so that both errors.Is(err,
// message.ErrX) and errors.As(err, &kerrErr) work. Context errors are
// returned as they are.
func publishErr(topic string, err error) error {
	switch {
	case isCtxErr(err):
		return err
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("kafka: publish %q: %w: %w", topic, message.ErrMessageTooLarge, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("kafka: publish %q: %w: %w", topic, message.ErrTopicNotFound, err)
	case errors.Is(err, kerr.InvalidTopicException):
		return fmt.Errorf("kafka: publish %q: %w: %w", topic, message.ErrInvalidTopic, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("kafka: publish %q: %w: %w", topic, message.ErrClosed, err)
	}
	return fmt.Errorf("kafka: publish %q: %w", topic, err)
}

// Close waits for running Publish calls to return (each waits for its own
// records), then closes the client. Later Publish calls return an error
// matching message.ErrClosed. Close is safe to call more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.cl.Close()
	return nil
}
