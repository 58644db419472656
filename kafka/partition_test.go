package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// partitionsOf consumes n records of topic from the start and returns the
// partition of each, by message ID.
func partitionsOf(t *testing.T, brokers []string, topic string, n int) map[string]int32 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]int32{}
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(got), n, topic)
		}
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == kafka.HeaderID {
					got[string(h.Value)] = r.Partition
				}
			}
		})
	}
	return got
}

// TestPublishWithPartition: adapter.WithPartition puts the records on that
// partition, whatever their key; a partition the topic does not have
// falls back to the key's partition (as Spring's recoverer lets the
// producer choose); other publishes are partitioned by key as before. Also
// with a partitioner of the user's (WithClientOptions).
func TestPublishWithPartition(t *testing.T) {
	for name, opts := range map[string][]kafka.PublisherOption{
		"default partitioner": nil,
		"user's partitioner":  {kafka.WithClientOptions(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))},
	} {
		t.Run(name, func(t *testing.T) {
			brokers := newFake(t)
			p := newPublisher(t, brokers, append([]kafka.PublisherOption{kafka.WithTopicCreation(4, 1)}, opts...)...)
			const topic = "pinned"
			ctx := context.Background()
			// The key's own partition, unpinned.
			plain := &message.Message{ID: "plain", Key: "k"}
			if err := p.Publish(ctx, topic, plain); err != nil {
				t.Fatal(err)
			}
			byKey := partitionsOf(t, brokers, topic, 1)["plain"]
			pin := (byKey + 2) % 4 // a partition the key does not hash to
			pinned := []*message.Message{{ID: "pinned-1", Key: "k"}, {ID: "pinned-2", Key: "other"}, {ID: "pinned-3"}}
			if err := p.Publish(adapter.WithPartition(ctx, pin), topic, pinned...); err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(adapter.WithPartition(ctx, 4), topic, &message.Message{ID: "missing", Key: "k"}); err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(ctx, topic, &message.Message{ID: "after", Key: "k"}); err != nil {
				t.Fatal(err)
			}
			got := partitionsOf(t, brokers, topic, 6)
			for _, m := range pinned {
				if got[m.ID] != pin {
					t.Errorf("%s on partition %d, want %d (adapter.WithPartition)", m.ID, got[m.ID], pin)
				}
			}
			if got["missing"] != byKey {
				t.Errorf("WithPartition(4) of a 4-partition topic: on partition %d, want the key's %d", got["missing"], byKey)
			}
			if got["after"] != byKey {
				t.Errorf("a publish without WithPartition on partition %d, want the key's %d", got["after"], byKey)
			}
		})
	}
}
