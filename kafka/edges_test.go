package kafka_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// TestBadBrokerAddresses: an empty address (strings.Split of an unset
// variable) used to be accepted and silently meant 127.0.0.1:9092.
func TestBadBrokerAddresses(t *testing.T) {
	for _, brokers := range [][]string{
		{""}, {"  "}, {"127.0.0.1:9092", ""}, {"localhost"}, {"localhost:"}, {":9092"},
		{"localhost:notaport"}, {"localhost:0"}, {"localhost:70000"}, {"local host:9092"},
		{" localhost:9092"}, {"localhost:9092\n"}, {"a:1:2"},
	} {
		_, perr := kafka.NewPublisher(brokers)
		_, serr := kafka.NewSubscriber(brokers)
		for side, err := range map[string]error{"NewPublisher": perr, "NewSubscriber": serr} {
			if !errors.Is(err, message.ErrInvalidConfig) {
				t.Errorf("%s(%q) = %v, want ErrInvalidConfig", side, brokers, err)
				continue
			}
			bad := brokers[len(brokers)-1]
			if !strings.Contains(err.Error(), "seed broker") || !strings.Contains(err.Error(), strings.TrimSpace(bad)) {
				t.Errorf("%s(%q) = %q, want it to name the address", side, brokers, err)
			}
		}
	}
	for _, brokers := range [][]string{{"127.0.0.1:9092"}, {"[::1]:9092"}, {"kafka-0.example:9093", "kafka-1.example:9093"}} {
		p, err := kafka.NewPublisher(brokers)
		if err != nil {
			t.Errorf("NewPublisher(%q) = %v", brokers, err)
			continue
		}
		p.Close()
		s, err := kafka.NewSubscriber(brokers)
		if err != nil {
			t.Errorf("NewSubscriber(%q) = %v", brokers, err)
			continue
		}
		s.Close()
	}
}

// TestPublishCancelledContext: a cancelled context publishes nothing and
// returns context.Canceled.
func TestPublishCancelledContext(t *testing.T) {
	brokers := newFake(t)
	p := newPublisher(t, brokers)
	// The topic exists and is known, so only Publish itself decides.
	if err := p.Publish(context.Background(), "cancelled", &message.Message{Payload: []byte("warm")}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"cancelled", "cancelled-new"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		msgs := []*message.Message{{Payload: []byte("1")}, {Payload: []byte("2")}, {Key: "k", Payload: []byte("3")}}
		if err := p.Publish(ctx, topic, msgs...); err != context.Canceled {
			t.Errorf("Publish(%s, cancelled ctx) = %v, want context.Canceled as is", topic, err)
		}
	}
	adm := kadm.NewClient(newClient(t, brokers))
	offs, err := adm.ListEndOffsets(context.Background(), "cancelled", "cancelled-new")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	if n != 1 {
		t.Errorf("%d records on the topics, want 1 (the warm-up): a cancelled Publish sent some", n)
	}
}

func newClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// silentListener accepts TCP connections and never answers, until the
// test ends.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestPublishUnresponsiveBroker: a broker that accepts TCP and never
// answers used to hold a Publish with context.Background() for 40 s;
// WithDeliveryTimeout bounds it, with an error that says what happened.
func TestPublishUnresponsiveBroker(t *testing.T) {
	addr := silentListener(t)
	for _, topic := range []string{"silent"} {
		p, err := kafka.NewPublisher([]string{addr}, kafka.WithDeliveryTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Publish(context.Background(), topic, &message.Message{Payload: []byte("x")}) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("Publish to a silent broker = nil")
			}
			if !strings.Contains(err.Error(), "WithDeliveryTimeout") {
				t.Errorf("Publish = %q, want it to name the bound (WithDeliveryTimeout)", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Publish = %v, want errors.Is(err, context.DeadlineExceeded)", err)
			}
		case <-time.After(25 * time.Second):
			t.Fatal("Publish to a silent broker did not return within 25s with WithDeliveryTimeout(1s)")
		}
		p.Close()
	}
	if _, err := kafka.NewPublisher([]string{addr}, kafka.WithDeliveryTimeout(0)); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("WithDeliveryTimeout(0) = %v, want ErrInvalidConfig", err)
	}
}

// TestTopicCreationPartitionMismatch: WithTopicCreation(12, ...) used to
// accept an existing topic with another partition count silently; it is
// now an error naming both counts. Without WithTopicCreation any count is
// accepted.
func TestTopicCreationPartitionMismatch(t *testing.T) {
	brokers := newFake(t)
	adm := kadm.NewClient(newClient(t, brokers))
	if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, "three"); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, brokers, kafka.WithTopicCreation(12, 1))
	err := p.Publish(context.Background(), "three", &message.Message{Payload: []byte("x")})
	if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "3 partitions") || !strings.Contains(err.Error(), "12") {
		t.Fatalf("Publish to a 3-partition topic with WithTopicCreation(12, 1) = %v, want ErrInvalidConfig naming 3 and 12", err)
	}
	s, err := kafka.NewSubscriber(brokers, kafka.WithTopicCreation(12, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Subscribe(ctx, "three", func(context.Context, *message.Message) error { return nil }); !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("Subscribe to a 3-partition topic with WithTopicCreation(12, 1) = %v, want ErrInvalidConfig", err)
	}
	// The default partition count does not apply to existing topics, and
	// a matching count is fine.
	if err := newPublisher(t, brokers).Publish(context.Background(), "three", &message.Message{Payload: []byte("x")}); err != nil {
		t.Fatalf("Publish without WithTopicCreation = %v", err)
	}
	if err := newPublisher(t, brokers, kafka.WithTopicCreation(3, 1)).Publish(context.Background(), "three", &message.Message{Payload: []byte("x")}); err != nil {
		t.Fatalf("Publish with WithTopicCreation(3, 1) = %v", err)
	}
}
