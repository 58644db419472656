package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// refuseProduce makes the fake cluster answer the next n produce requests
// (n < 0: all of them) with UNKNOWN_TOPIC_OR_PARTITION, as a
// partition leader does for a moment after the topic was created, and
// returns the count of refused requests.
func refuseProduce(c *kfake.Cluster, n int32) *atomic.Int32 {
	return failProduce(c, kerr.UnknownTopicOrPartition, n)
}

// failProduce makes the fake cluster answer the next n produce requests
// (n < 0: all of them) with code on every partition, and returns the
// count of answered requests.
func failProduce(c *kfake.Cluster, code *kerr.Error, n int32) *atomic.Int32 {
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.ProduceRequest)
		if n >= 0 && refused.Load() >= n {
			return nil, nil, false
		}
		refused.Add(1)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return &refused
}

// fastMetadata lets franz-go refresh metadata at once after an unknown
// topic answer, so its own retries (kgo.UnknownTopicRetries, 4) run out
// quickly.
var fastMetadata = kafka.WithClientOptions(kgo.MetadataMinAge(10 * time.Millisecond))

// A just-created topic may be unknown to its partition leader for a
// moment: Publish goes on producing the refused records, in order, past
// franz-go's own limit of unknown-topic retries, and each is written once;
// whether the Publisher created the topic or found it created by another
// client (a subscriber, an operator).
func TestPublishRetriesUnknownTopicJustCreated(t *testing.T) {
	for _, byOther := range []bool{false, true} {
		t.Run(fmt.Sprintf("created-by-other=%v", byOther), func(t *testing.T) { retriesUnknownTopic(t, byOther) })
	}
}

func retriesUnknownTopic(t *testing.T, byOther bool) {
	c := newFakeCluster(t)
	brokers := c.ListenAddrs()
	const topic = "fresh"
	if byOther {
		adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer adm.Close()
		if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	p := newPublisher(t, brokers, kafka.WithTopicCreation(2, 1), fastMetadata)
	const refusals = 12 // franz-go alone fails the records after 5
	refused := refuseProduce(c, refusals)
	var msgs []*message.Message
	for i := range 20 {
		msgs = append(msgs, &message.Message{Key: fmt.Sprintf("k%d", i%3), Payload: fmt.Appendf(nil, "%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Publish(ctx, topic, msgs...); err != nil {
		t.Fatalf("Publish to a just-created topic refused %d times: %v", refusals, err)
	}
	if got := refused.Load(); got < refusals {
		t.Fatalf("only %d produce requests were refused, want %d: the test did not exercise the retry", got, refusals)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	perKey := map[string][]string{}
	seen := map[string]int{}
	for n := 0; n < len(msgs); {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", n, len(msgs))
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			seen[string(r.Value)]++
			perKey[string(r.Key)] = append(perKey[string(r.Key)], string(r.Value))
		})
	}
	for _, m := range msgs {
		if seen[string(m.Payload)] != 1 {
			t.Errorf("message %s written %d times, want once", m.Payload, seen[string(m.Payload)])
		}
	}
	for k, got := range perKey {
		var want []string
		for _, m := range msgs {
			if m.Key == k {
				want = append(want, string(m.Payload))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("key %s in the order %v, want %v", k, got, want)
		}
	}
}

// A topic that took records and is now unknown was deleted: Publish
// reports ErrTopicNotFound after franz-go's retries, instead of waiting for
// its context.
func TestPublishUnknownTopicAfterRecordsFails(t *testing.T) {
	c := newFakeCluster(t)
	brokers := c.ListenAddrs()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	const topic = "old"
	if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, brokers, fastMetadata)
	if err := p.Publish(context.Background(), topic, &message.Message{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	refused := refuseProduce(c, -1)
	// No deadline of ours: the publisher's own bound (30 s by default)
	// would show in the error as WithDeliveryTimeout.
	err = p.Publish(context.Background(), topic, &message.Message{Key: "a"})
	if !errors.Is(err, message.ErrTopicNotFound) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a deleted topic = %v, want ErrTopicNotFound from the broker's answer, not a timeout", err)
	}
	if refused.Load() == 0 {
		t.Fatal("no produce request was refused")
	}
}

// A just-created topic that stays unknown: Publish ends with its context
// and names the cause.
func TestPublishUnknownTopicJustCreatedEndsWithContext(t *testing.T) {
	c := newFakeCluster(t)
	p := newPublisher(t, c.ListenAddrs(), fastMetadata)
	const topic = "never"
	refused := refuseProduce(c, -1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.Publish(ctx, topic, &message.Message{Key: "a"})
	if !errors.Is(err, message.ErrTopicNotFound) {
		t.Fatalf("Publish = %v, want an error matching ErrTopicNotFound", err)
	}
	if ctx.Err() == nil {
		t.Errorf("Publish returned %v before its context ended (refused %d times): the retry gave up early", err, refused.Load())
	}
}
