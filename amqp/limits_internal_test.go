package amqp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestBrokerSizeLimitMapping: RabbitMQ refuses a message over
// max_message_size by closing the channel with PRECONDITION_FAILED and
// "message size N is larger than configured max size M" (or "max size M"
// at the hard limit); that must become message.ErrMessageTooLarge, still
// wrapping the broker's *amqp091.Error.
func TestBrokerSizeLimitMapping(t *testing.T) {
	for _, c := range []struct {
		err   error
		limit int
	}{
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728", Server: true}, 134217728},
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size 600000000 is larger than max size 536870912", Server: true}, 536870912},
		{fmt.Errorf("channel: %w", &amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size 2049 is larger than configured max size 2048", Server: true}), 2048},
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - inequivalent arg 'durable'", Server: true}, 0},
		{&amqp091.Error{Code: 404, Reason: "NOT_FOUND - message size 2 is larger than configured max size 1", Server: true}, 0},
		{errors.New("message size 2 is larger than configured max size 1"), 0},
	} {
		limit, ok := brokerSizeLimit(c.err)
		if ok != (c.limit > 0) || limit != c.limit {
			t.Errorf("brokerSizeLimit(%v) = %d, %v; want %d", c.err, limit, ok, c.limit)
		}
		if !ok {
			continue
		}
		m := &message.Message{ID: "big", Payload: make([]byte, limit+1)}
		err := tooLargeForBroker(3, 5, m, limit, c.err)
		var ae *amqp091.Error
		if !errors.Is(err, message.ErrMessageTooLarge) || !errors.As(err, &ae) || ae.Code != 406 || !strings.Contains(err.Error(), `"big"`) {
			t.Errorf("tooLargeForBroker = %v: want ErrMessageTooLarge naming the message and wrapping the broker's 406", err)
		}
	}
}

// TestBrokerKilledConnection tells the losses a message can cause from
// the others.
func TestBrokerKilledConnection(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&amqp091.Error{Code: 501, Reason: "FRAME_ERROR - type 2, all octets = <<>>: {frame_too_large,1048603,131064}", Server: true}, true},
		{&amqp091.Error{Code: 505, Reason: "UNEXPECTED_FRAME", Server: true}, true},
		{&amqp091.Error{Code: 320, Reason: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'", Server: true}, false},
		{&amqp091.Error{Code: 501, Reason: "EOF"}, false},
		{amqp091.ErrClosed, false},
		{errors.New("channel closed"), false},
		{nil, false},
	} {
		if got := brokerKilledConnection(c.err); got != c.want {
			t.Errorf("brokerKilledConnection(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestHeaderFrameSizeIsExact publishes, with the plain client, messages
// whose header frame headerFrameSize puts at exactly the negotiated
// frame_max, and over it. RabbitMQ tolerates 8 bytes more than AMQP
// allows (rabbit_reader's FRAME_SIZE_FUDGE, for clients that miscount the
// frame overhead): it must take frames up to frame_max + 8 and close the
// connection for frame_max + 9. The boundary falling exactly there shows
// that headerFrameSize counts exactly as the client encodes; ferry holds
// to AMQP's frame_max.
func TestHeaderFrameSizeIsExact(t *testing.T) {
	url := testenv.NeedAMQP(t)
	const fudge = 8
	for _, over := range []int{0, fudge, fudge + 1} {
		conn, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		frameMax := conn.Config.FrameSize
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
		p := amqp091.Publishing{
			Headers:      amqp091.Table{"ferry-time": int64(1), "n": int32(2), "f": 1.5, "t": time.Unix(1, 0), "a": []any{"x", int16(1)}, "tbl": amqp091.Table{"b": []byte("y")}, "pad": ""},
			DeliveryMode: 2, Priority: 1, MessageId: "id", ContentType: "application/json", Timestamp: time.Unix(1, 0), Body: []byte("body"),
		}
		p.Headers["pad"] = strings.Repeat("x", frameMax-headerFrameSize(&p)+over)
		if got := headerFrameSize(&p); got != frameMax+over {
			t.Fatalf("padding made a %d-byte frame, want %d", got, frameMax+over)
		}
		// The default exchange with an unbound routing key: routed
		// nowhere, confirmed all the same.
		dc, err := ch.PublishWithDeferredConfirm("", "ferrytest.nowhere", false, false, p)
		if err != nil && over > fudge {
			// The broker closed the connection on the too-large header
			// frame before the client finished writing the body frame:
			// the same outcome, seen earlier.
			t.Logf("%d bytes over frame_max: the publish itself failed: %v", over, err)
			conn.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		switch {
		case ok && over <= fudge:
		case ok:
			t.Errorf("a header frame %d bytes over frame_max %d was accepted: headerFrameSize is not exact", over, frameMax)
		case over <= fudge:
			t.Errorf("a %d-byte header frame (frame_max %d) was not confirmed: %v", frameMax+over, frameMax, err)
		default:
			select {
			case e := <-closed:
				t.Logf("%d bytes over frame_max: %v", over, e)
			case <-time.After(10 * time.Second):
				t.Errorf("a header frame %d bytes over frame_max was not confirmed, but the connection stayed open", over)
			}
		}
		conn.Close()
	}
}

// TestConnectionKillerFailsAlone is the safety net behind the frame check:
// with the check off, a message with a 1 MiB header makes the broker close
// the connection each time it is written. Publish must fail that message
// alone (ErrBrokerClosedConnection, ErrInvalidMessage, the broker's error)
// after a bounded number of attempts, publish the rest of its batch, and
// another goroutine publishing on the same Publisher meanwhile must see
// every one of its messages confirmed.
func TestConnectionKillerFailsAlone(t *testing.T) {
	url := testenv.NeedAMQP(t)
	checkFrames = false
	defer func() { checkFrames = true }()
	for _, channels := range []int{1, 4} {
		t.Run(fmt.Sprint(channels, "channels"), func(t *testing.T) { testConnectionKiller(t, url, channels) })
	}
}

func testConnectionKiller(t *testing.T, url string, channels int) {
	topic := fmt.Sprintf("ferrytest.TestConnectionKillerFailsAlone.%d", time.Now().UnixNano())
	var kills int
	var mu sync.Mutex
	p, err := NewPublisher(url, WithPublishChannels(channels), WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond), WithOnStateChange(func(sc StateChange) {
		if sc.State == StateDisconnected {
			mu.Lock()
			kills++
			mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer func() {
		c, err := amqp091.Dial(url)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			_, _ = ch.QueueDelete(topic+".q", false, false, false)
			_ = ch.ExchangeDelete(topic, false, false)
		}
	}()
	// A plain queue bound to the topic, so that messages are routed.
	{
		if err := p.Declare(ctx, topic); err != nil {
			t.Fatal(err)
		}
		c, err := amqp091.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		ch, _ := c.Channel()
		if _, err := ch.QueueDeclare(topic+".q", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(topic+".q", "#", topic, false, nil); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	others := make(chan error, 2)
	for g := range 2 {
		go func() {
			for i := range 30 {
				if err := p.Publish(ctx, topic, &message.Message{ID: fmt.Sprint("other-", g, "-", i)}); err != nil {
					others <- fmt.Errorf("other publish %d-%d: %w", g, i, err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			others <- nil
		}()
	}
	batch := []*message.Message{
		{ID: "a"},
		{ID: "poison", Headers: map[string]string{"big": strings.Repeat("x", 1<<20)}},
		{ID: "b"},
	}
	err = p.Publish(ctx, topic, batch...)
	var pe *message.PublishError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Index != 1 {
		t.Fatalf("Publish = %v, want a PublishError for #1 only", err)
	}
	var ae *amqp091.Error
	if !errors.Is(err, ErrBrokerClosedConnection) || !errors.Is(err, message.ErrInvalidMessage) || !errors.As(err, &ae) {
		t.Errorf("error %v: want ErrBrokerClosedConnection, ErrInvalidMessage and the broker's *amqp091.Error", err)
	}
	t.Logf("Publish: %v", err)
	for range 2 {
		if err := <-others; err != nil {
			t.Errorf("another Publish suffered: %v", err)
		}
	}
	mu.Lock()
	t.Logf("the broker closed the connection %d times", kills)
	if kills > maxConnectionKills+3 {
		t.Errorf("%d connection losses, want at most %d", kills, maxConnectionKills+3)
	}
	mu.Unlock()
	// Everything but the poison is in the queue.
	c, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	seen := map[string]bool{}
	for {
		d, ok, err := ch.Get(topic+".q", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		seen[d.MessageId] = true
	}
	for _, id := range []string{"a", "b", "other-0-0", "other-0-29", "other-1-0", "other-1-29"} {
		if !seen[id] {
			t.Errorf("message %s was not stored (stored: %d)", id, len(seen))
		}
	}
	if seen["poison"] {
		t.Error("the poison was stored")
	}
}
