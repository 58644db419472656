package kafka_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

func newPublisher(t *testing.T, brokers []string, opts ...kafka.PublisherOption) *kafka.Publisher {
	t.Helper()
	p, err := kafka.NewPublisher(brokers, append([]kafka.PublisherOption{kafka.WithClientOptions(kgo.ProducerLinger(time.Millisecond))}, opts...)...)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestValidateTopic(t *testing.T) {
	good := []string{"a", "orders", "orders.v1", "my_topic-2", strings.Repeat("x", 249), "..."}
	for _, topic := range good {
		if err := kafka.ValidateTopic(topic); err != nil {
			t.Errorf("ValidateTopic(%q) = %v, want nil", topic, err)
		}
	}
	bad := []string{"", ".", "..", "a b", "a/b", "ü", "tab\t", strings.Repeat("x", 250)}
	for _, topic := range bad {
		err := kafka.ValidateTopic(topic)
		if !errors.Is(err, message.ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
}

func TestPublishTooLargeSendsNothingAndChangesNothing(t *testing.T) {
	brokers := newFake(t)
	p := newPublisher(t, brokers, kafka.WithClientOptions(kgo.ProducerBatchMaxBytes(64<<10)))
	small := &message.Message{Payload: []byte("ok")}
	big := &message.Message{Payload: make([]byte, 64<<10)}
	err := p.Publish(context.Background(), "big", small, big)
	if !errors.Is(err, message.ErrMessageTooLarge) {
		t.Fatalf("Publish = %v, want ErrMessageTooLarge", err)
	}
	if !strings.Contains(err.Error(), "#1") {
		t.Errorf("error %q does not name the message index", err)
	}
	if small.ID != "" || !small.Time.IsZero() {
		t.Errorf("rejected batch changed a message: ID %q Time %v", small.ID, small.Time)
	}
	adm := kadm.NewClient(p.Client())
	ends, err := adm.ListEndOffsets(context.Background(), "big")
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset != 0 {
			t.Errorf("partition %d has %d records after a rejected batch", o.Partition, o.Offset)
		}
	})
}

func TestPublishWithoutTopicCreation(t *testing.T) {
	brokers := newFake(t)
	p := newPublisher(t, brokers, kafka.WithoutTopicCreation())
	err := p.Publish(context.Background(), "missing", &message.Message{Payload: []byte("x")})
	if !errors.Is(err, message.ErrTopicNotFound) {
		t.Fatalf("Publish = %v, want ErrTopicNotFound", err)
	}
	s, err := kafka.NewSubscriber(brokers, kafka.WithoutTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Subscribe(context.Background(), "missing", func(context.Context, *message.Message) error { return nil })
	if !errors.Is(err, message.ErrTopicNotFound) {
		t.Fatalf("Subscribe = %v, want ErrTopicNotFound", err)
	}
}

func TestPublishCreatesTopicWithConfiguredPartitions(t *testing.T) {
	brokers := newFake(t)
	p := newPublisher(t, brokers, kafka.WithTopicCreation(5, 1))
	if err := p.Publish(context.Background(), "five", &message.Message{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	details, err := kadm.NewClient(p.Client()).ListTopics(context.Background(), "five")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details["five"].Partitions); n != 5 {
		t.Fatalf("topic has %d partitions, want 5", n)
	}
}

// A broker error on produce reaches the caller as a *message.PublishError
// whose entries match both the ferry sentinel and the kerr error.
func TestPublishBrokerErrorIsTypedAndWrapped(t *testing.T) {
	c := newFakeCluster(t)
	brokers := c.ListenAddrs()
	p := newPublisher(t, brokers, kafka.WithClientOptions(kgo.RecordRetries(0)))
	ctx := context.Background()
	if err := p.Publish(ctx, "fails", &message.Message{Key: "warm"}); err != nil {
		t.Fatal(err)
	}
	calls := failProduce(c, kerr.MessageTooLarge, -1)
	msgs := []*message.Message{{Key: "a"}, {Key: "b"}}
	err := p.Publish(ctx, "fails", msgs...)
	if calls.Load() == 0 {
		t.Fatal("control function never saw a produce request")
	}
	var pe *message.PublishError
	if !errors.As(err, &pe) {
		t.Fatalf("Publish = %v, want *message.PublishError", err)
	}
	if len(pe.Failed) != 2 || pe.Total != 2 {
		t.Fatalf("PublishError lists %d of %d, want 2 of 2", len(pe.Failed), pe.Total)
	}
	if !errors.Is(err, message.ErrMessageTooLarge) {
		t.Errorf("error %v does not match ErrMessageTooLarge", err)
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) || ke != kerr.MessageTooLarge {
		t.Errorf("error %v does not unwrap to kerr.MessageTooLarge", err)
	}
	if got := pe.Messages(); got[0] != msgs[0] || got[1] != msgs[1] {
		t.Errorf("Messages() = %v, want the published messages", got)
	}
}

func TestPublishCancelledContextIsUnwrapped(t *testing.T) {
	brokers := newFake(t)
	p := newPublisher(t, brokers)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Publish(ctx, "cancelled", &message.Message{Key: "a"})
	if err != context.Canceled {
		t.Fatalf("Publish with cancelled ctx = %#v, want context.Canceled itself", err)
	}
}

// The record other Kafka clients see: key, value, timestamp and headers,
// with the ID in the ferry-id header.
func TestPublishedRecordLayout(t *testing.T) {
	brokers := newFake(t)
	p := newPublisher(t, brokers, kafka.WithTopicCreation(1, 1))
	at := time.UnixMilli(1_700_000_000_123)
	m := &message.Message{ID: "id-1", Key: "k", Payload: []byte("v"), Time: at, Headers: map[string]string{"h": "x", kafka.HeaderID: "ignored"}}
	if err := p.Publish(context.Background(), "layout", m); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("layout"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r *kgo.Record
	for r == nil {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no record consumed")
		}
		fs.EachRecord(func(rr *kgo.Record) { r = rr })
	}
	if string(r.Key) != "k" || string(r.Value) != "v" || !r.Timestamp.Equal(at) {
		t.Errorf("record key %q value %q ts %v, want k v %v", r.Key, r.Value, r.Timestamp, at)
	}
	hdr := map[string][]string{}
	for _, h := range r.Headers {
		hdr[h.Key] = append(hdr[h.Key], string(h.Value))
	}
	if got := hdr[kafka.HeaderID]; len(got) != 1 || got[0] != "id-1" {
		t.Errorf("%s headers = %q, want exactly [id-1]", kafka.HeaderID, got)
	}
	if got := hdr["h"]; len(got) != 1 || got[0] != "x" {
		t.Errorf("h header = %q, want [x]", got)
	}
}
