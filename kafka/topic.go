package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// ValidateTopic reports whether topic is a legal Kafka topic name: 1 to 249
// characters from [a-zA-Z0-9._-], and not "." or ".." (the kit's
// adapter.ValidateLogTopic, which inmem applies too). The error matches
// message.ErrInvalidTopic and names the problem.
func ValidateTopic(topic string) error {
	if err := adapter.ValidateLogTopic(topic); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// topics makes sure topics exist, creating them when configured to, and
// remembers the ones it has seen.
type topics struct {
	adm         *kadm.Client
	create      bool
	partitions  int32
	replication int16
	mustMatch   bool // WithTopicCreation given: an existing topic's partition count must match

	known sync.Map // topic name -> struct{}
	// unproven holds the topics this client found or created but never
	// produced to yet, with the time it first did: the broker may not know
	// a just-created topic everywhere yet (see fresh).
	unproven sync.Map // topic name -> time.Time
	mu       sync.Mutex
}

// freshTopic is how long after first finding or creating a topic Publish
// keeps producing again the records a partition leader refused with
// UNKNOWN_TOPIC_OR_PARTITION, while no record reached it yet (within the
// call's ctx).
const freshTopic = time.Minute

// fresh reports whether this client found or created topic within
// freshTopic and no record of it has been acknowledged since.
func (t *topics) fresh(topic string) bool {
	v, ok := t.unproven.Load(topic)
	return ok && time.Since(v.(time.Time)) < freshTopic
}

// proven records that the broker acknowledged a record of topic: from now
// on an unknown-topic answer means it was deleted.
func (t *topics) proven(topic string) {
	if _, ok := t.unproven.Load(topic); ok {
		t.unproven.Delete(topic)
	}
}

func newTopics(adm *kadm.Client, c *config) *topics {
	return &topics{adm: adm, create: c.createTopics, partitions: c.partitions, replication: c.replication, mustMatch: c.havePartitions}
}

// ensure returns nil when topic exists or was created.
func (t *topics) ensure(ctx context.Context, topic string) error {
	if _, ok := t.known.Load(topic); ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.known.Load(topic); ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	details, err := t.adm.ListTopics(ctx, topic)
	if err != nil {
		return topicErr(ctx, topic, "look up", err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		if n := len(d.Partitions); t.mustMatch && n != int(t.partitions) {
			return fmt.Errorf("kafka: topic %q: %w: it exists with %d partitions, WithTopicCreation(%d, %d) asks for %d (keys would map to other partitions than intended; change the option or the topic)",
				topic, message.ErrInvalidConfig, n, t.partitions, t.replication, t.partitions)
		}
		t.unproven.LoadOrStore(topic, time.Now())
		t.known.Store(topic, struct{}{})
		return nil
	} else if ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return topicErr(ctx, topic, "look up", d.Err)
	}
	if !t.create {
		return fmt.Errorf("kafka: topic %q: %w (topic creation is disabled by WithoutTopicCreation)", topic, message.ErrTopicNotFound)
	}
	resp, err := t.adm.CreateTopic(ctx, t.partitions, t.replication, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		if resp.ErrMessage != "" {
			err = fmt.Errorf("%w: %s", err, resp.ErrMessage)
		}
		return topicErr(ctx, topic, fmt.Sprintf("create (%d partitions, replication %d)", t.partitions, t.replication), err)
	}
	t.unproven.LoadOrStore(topic, time.Now())
	t.known.Store(topic, struct{}{})
	return nil
}

// forget drops topic from the cache, so the next ensure looks it up again
// (after the broker said it does not exist).
func (t *topics) forget(topic string) { t.known.Delete(topic) }

func topicErr(ctx context.Context, topic, what string, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return ctx.Err()
	}
	switch {
	case errors.Is(err, kerr.InvalidTopicException):
		return fmt.Errorf("kafka: %s topic %q: %w: %w", what, topic, message.ErrInvalidTopic, err)
	case errors.Is(err, kerr.InvalidReplicationFactor), errors.Is(err, kerr.InvalidPartitions):
		return fmt.Errorf("kafka: %s topic %q: %w: %w", what, topic, message.ErrInvalidConfig, err)
	}
	return fmt.Errorf("kafka: %s topic %q: %w", what, topic, err)
}
