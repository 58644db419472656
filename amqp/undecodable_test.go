package amqp_test

// Tests of deliveries the client cannot decode (issue 15, "the edges
// keep the promises"), and helpers for the other edge tests.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a slog handler and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nested returns a table nested depth levels deep.
func nested(depth int) amqp091.Table {
	t := amqp091.Table{"leaf": "x"}
	for range depth {
		t = amqp091.Table{"n": t}
	}
	return t
}

// TestUndecodableDeliveryIsReported: a stored message whose header table
// is nested deeper than amqp091-go reads (32 levels; RabbitMQ accepts and
// stores it) kills the consumer's connection each time it is delivered.
// ferry must say so (an Error log naming the cause, StateChange errors
// matching amqp.ErrUndecodableDelivery) and back off instead of
// reconnecting ten times a second.
func TestUndecodableDeliveryIsReported(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	st := newStates()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s := newSub(t, url, amqp.WithGroup("g"), amqp.WithShards(1), amqp.WithOnStateChange(st.record), amqp.WithLogger(logger))
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, url, topic, amqp091.Publishing{MessageId: "poison", Headers: amqp091.Table{"deep": nested(40)}, Body: []byte("poison")})

	c := newCollector()
	start := time.Now()
	run(t, s, topic, c.handle)
	st.waitCount(t, amqp.StateDisconnected, 3)
	// Watch for a while: a hot loop reconnects ~10 times a second.
	time.Sleep(3 * time.Second)
	elapsed := time.Since(start)
	n := st.count(amqp.StateDisconnected)
	t.Logf("%d disconnections in %v", n, elapsed.Round(time.Millisecond))
	if max := 12; n > max {
		t.Errorf("%d disconnections in %v, want at most %d: the subscriber reconnects in a hot loop", n, elapsed.Round(time.Millisecond), max)
	}
	st.mu.Lock()
	var matched int
	var last error
	for _, sc := range st.seen {
		if sc.State == amqp.StateDisconnected {
			last = sc.Err
			if errors.Is(sc.Err, amqp.ErrUndecodableDelivery) {
				matched++
			}
		}
	}
	st.mu.Unlock()
	if matched == 0 {
		t.Errorf("no StateChange error matches amqp.ErrUndecodableDelivery; last: %v", last)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "decode") {
		t.Errorf("no Error log about the undecodable delivery; the last lines:\n%s", lastLines(out, 6))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// publishRaw publishes with the plain client, confirmed.
func publishRaw(t testing.TB, url, exchange string, ps ...amqp091.Publishing) {
	t.Helper()
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		dc, err := ch.PublishWithDeferredConfirm(exchange, "", true, false, p)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if !ok || err != nil {
			t.Fatalf("raw publish not confirmed: %v %v", ok, err)
		}
	}
}

// TestUndecodableDeliveryWayOut is the documented way out: quorum queues
// with x-delivery-limit and a dead-letter exchange. The broker counts each
// delivery of the undecodable message that its consumer's connection loss
// returns, dead-letters it once the limit is passed, and the rest of the
// queue flows (on RabbitMQ 3.10 as on 4.x).
func TestUndecodableDeliveryWayOut(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	dlx, dlq := topic+".dlx", topic+".dlq"
	deleteTopology(t, url, topic, topic+".g")
	t.Cleanup(func() { deleteNow(url, dlx, dlq) })
	raw, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(dlx, amqp091.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(dlq, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}

	st := newStates()
	s := newSub(t, url, amqp.WithGroup("g"), amqp.WithShards(1), fastReconnect, amqp.WithOnStateChange(st.record),
		amqp.WithQuorumQueues(), amqp.WithQueueArgs(amqp091.Table{"x-delivery-limit": int64(2)}), amqp.WithDeadLetterExchange(dlx))
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, url, topic,
		amqp091.Publishing{MessageId: "good-1", Body: []byte("1")},
		amqp091.Publishing{MessageId: "poison", Headers: amqp091.Table{"deep": nested(40)}, Body: []byte("poison")},
		amqp091.Publishing{MessageId: "good-2", Body: []byte("2")},
	)
	c := newCollector()
	run(t, s, topic, c.handle)
	c.waitIDs(t, []string{"good-1", "good-2"})
	t.Logf("the poison cost %d connections", st.count(amqp.StateDisconnected))
	// Dead-lettering is asynchronous: poll the queue's depth.
	deadline := time.Now().Add(wait)
	for {
		q, err := ch.QueueDeclarePassive(dlq, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == 1 {
			break
		}
		if q.Messages > 1 || time.Now().After(deadline) {
			t.Fatalf("the dead-letter queue holds %d messages, want the poison only", q.Messages)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
