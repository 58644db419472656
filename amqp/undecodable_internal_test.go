package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestUndecodableStreak: only the client's own decode errors count, in a
// row; a loss of another kind or a connection that lived long ends the
// streak; the Error log comes at the third loss and every tenth after.
func TestUndecodableStreak(t *testing.T) {
	syntax := &amqp091.Error{Code: amqp091.FrameError, Reason: amqp091.ErrSyntax.Error()}
	tooLarge := &amqp091.Error{Code: amqp091.FrameError, Reason: amqp091.ErrFrameTooLarge.Error()}
	for _, c := range []struct {
		err  *amqp091.Error
		want bool
	}{
		{syntax, true},
		{tooLarge, true},
		{&amqp091.Error{Code: amqp091.FrameError, Reason: amqp091.ErrFrame.Error()}, true},
		{&amqp091.Error{Code: amqp091.FrameError, Reason: "EOF"}, false},
		{&amqp091.Error{Code: amqp091.FrameError, Reason: "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"}, false},
		{&amqp091.Error{Code: amqp091.FrameError, Reason: "FRAME_ERROR - type 2, all octets = <<>>: {frame_too_large,1048603,131064}", Server: true}, false},
		{&amqp091.Error{Code: amqp091.ConnectionForced, Reason: "CONNECTION_FORCED - shutdown", Server: true}, false},
		{nil, false},
	} {
		if got := isUndecodable(c.err); got != c.want {
			t.Errorf("isUndecodable(%v) = %v, want %v", c.err, got, c.want)
		}
	}

	var s undecodableStreak
	var alarms []int
	for i := 1; i <= 25; i++ {
		if n := s.observe(syntax, time.Millisecond); n != i {
			t.Fatalf("loss %d: streak %d", i, n)
		}
		if s.alarm() {
			alarms = append(alarms, i)
		}
	}
	if fmt.Sprint(alarms) != "[3 13 23]" {
		t.Errorf("alarms at %v, want [3 13 23]", alarms)
	}
	if n := s.observe(&amqp091.Error{Code: 501, Reason: "EOF"}, time.Millisecond); n != 0 {
		t.Errorf("a network loss continues the streak: %d", n)
	}
	if n := s.observe(syntax, time.Millisecond); n != 1 {
		t.Errorf("streak after a network loss = %d, want 1", n)
	}
	if n := s.observe(syntax, stableConnection); n != 1 {
		t.Errorf("streak after a stable connection = %d, want 1", n)
	}
	err := undecodableCause(4, syntax)
	var ae *amqp091.Error
	if !errors.Is(err, ErrUndecodableDelivery) || !errors.As(err, &ae) {
		t.Errorf("undecodableCause = %v: want ErrUndecodableDelivery wrapping the client's error", err)
	}
}

// deepTable is a table nested depth levels deep.
func deepTable(depth int) amqp091.Table {
	t := amqp091.Table{"leaf": "x"}
	for range depth {
		t = amqp091.Table{"n": t}
	}
	return t
}

// TestCarefulPrefetchIsRestored: after undecodable losses the subscriber
// consumes with prefetch 1 (so that the messages behind the undecodable
// one are not returned with it, their delivery count rising, on every
// loss), and once the connection has held for stableConnection it
// consumes with its normal prefetch again: four blocking handlers of four
// keys then run at once on one shard.
func TestCarefulPrefetchIsRestored(t *testing.T) {
	url := testenv.NeedAMQP(t)
	old := stableConnection
	stableConnection = time.Second
	defer func() { stableConnection = old }()
	for _, competing := range []bool{false, true} {
		t.Run(fmt.Sprint("competing=", competing), func(t *testing.T) { testCarefulPrefetch(t, url, competing) })
	}
}

func testCarefulPrefetch(t *testing.T, url string, competing bool) {
	topic := fmt.Sprintf("ferrytest.TestCarefulPrefetchIsRestored.%d", time.Now().UnixNano())
	dlx := topic + ".dlx"
	raw, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(dlx, amqp091.ExchangeFanout, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	opts := []SubscriberOption{WithGroup("g"), WithShards(1), WithConcurrency(4), WithPrefetch(16),
		WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond),
		WithQuorumQueues(), WithQueueArgs(amqp091.Table{"x-delivery-limit": int64(2)}), WithDeadLetterExchange(dlx)}
	if competing {
		opts = append(opts, WithCompetingConsumers())
	}
	s, err := NewSubscriber(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if ch, err := raw.Channel(); err == nil {
			for _, q := range []string{topic + ".g", topic + ".g.0"} {
				_, _ = ch.QueueDelete(q, false, false, false)
			}
			for _, x := range []string{topic, topic + ".g", topic + ".g.unsharded", topic + ".g.members", dlx} {
				_ = ch.ExchangeDelete(x, false, false)
			}
		}
	}()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	pub := func(p amqp091.Publishing) {
		dc, err := ch.PublishWithDeferredConfirm(topic, "", true, false, p)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("not confirmed: %v", err)
		}
	}
	pub(amqp091.Publishing{MessageId: "poison", Headers: amqp091.Table{"deep": deepTable(40)}})
	pub(amqp091.Publishing{MessageId: "good"})

	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, topic, func(ctx context.Context, m *message.Message) error {
			if m.ID != "good" {
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				<-release
				mu.Lock()
				running--
				mu.Unlock()
			}
			got <- m.ID
			return nil
		})
	}()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("the message behind the undecodable one was not delivered")
	}
	// Past stableConnection the consumer is opened again with its
	// prefetch of 16: four keys run at once.
	time.Sleep(stableConnection + 500*time.Millisecond)
	for i := range 4 {
		pub(amqp091.Publishing{MessageId: fmt.Sprint("block-", i), Headers: amqp091.Table{DefaultKeyHeader: fmt.Sprint("k", i)}})
	}
	deadline := time.After(20 * time.Second)
	for {
		mu.Lock()
		m := most
		mu.Unlock()
		if m == 4 {
			break
		}
		select {
		case <-deadline:
			close(release)
			t.Fatalf("at most %d handlers ran at once, want 4: the prefetch stayed at 1", m)
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Subscribe: %v", err)
	}
}
