package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestConcurrentReturnsEachReachTheirCall: concurrent Publish calls that
// share the publisher's channels, each mixing routable and unroutable
// messages, each report exactly their own unroutable ones (a return is
// matched to its message before the message's confirm is taken as a
// success), and a call with every message routable reports none.
func TestConcurrentReturnsEachReachTheirCall(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	p := newPub(t, url, amqp.WithBindingKey("order.*"), amqp.WithPublishChannels(2), amqp.WithCompetingConsumers())
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	const callers, calls, per = 16, 15, 8
	var wg sync.WaitGroup
	errs := make(chan error, callers*calls)
	for g := range callers {
		wg.Go(func() {
			for c := range calls {
				var want []int
				msgs := make([]*message.Message, per)
				for i := range msgs {
					k := fmt.Sprintf("order.%d-%d-%d", g, c, i)
					// caller g's call c: message i unroutable when (g+c+i) % 3 == 0,
					// except that every 5th call is all routable.
					if c%5 != 4 && (g+c+i)%3 == 0 {
						k = fmt.Sprintf("invoice.%d-%d-%d", g, c, i)
						want = append(want, i)
					}
					msgs[i] = &message.Message{Key: k, Payload: []byte(k)}
				}
				err := p.Publish(ctx, topic, msgs...)
				var got []int
				var pe *message.PublishError
				switch {
				case err == nil:
				case errors.As(err, &pe):
					for _, f := range pe.Failed {
						if !errors.Is(f.Err, message.ErrUnroutable) {
							errs <- fmt.Errorf("caller %d call %d: message %d failed with %v, want ErrUnroutable", g, c, f.Index, f.Err)
						}
						got = append(got, f.Index)
					}
				default:
					errs <- fmt.Errorf("caller %d call %d: %v", g, c, err)
					continue
				}
				if !slices.Equal(got, want) {
					errs <- fmt.Errorf("caller %d call %d: unroutable %v, want %v", g, c, got, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestAbandonedReturnIsNotMatchedToARetry: a Publish call whose ctx ends
// while the broker's return and confirm of an unroutable message are still
// on their way (held by a proxy) leaves that return to be taken when the
// confirm comes; the same message published again once it is routable
// succeeds, instead of being reported unroutable by the stale return.
func TestAbandonedReturnIsNotMatchedToARetry(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g", topic+".h")
	ctx := context.Background()
	p := newPub(t, purl, amqp.WithBindingKey("order.*"), amqp.WithPublishChannels(1), amqp.WithCompetingConsumers())
	if err := p.Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	// The channel is open and in confirm mode before replies are held.
	if err := p.Publish(ctx, topic, &message.Message{Key: "order.1", Payload: []byte("warm-up")}); err != nil {
		t.Fatal(err)
	}
	m := &message.Message{ID: "abandoned-1", Key: "invoice.1", Payload: []byte("unroutable for now")}
	px.Hold()
	sent := px.Sent()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Publish(cctx, topic, m.Clone()) }()
	// Wait until the publish (method, header and body frames) has gone
	// to the broker, whose return and confirm the proxy now holds.
	for px.Sent() < sent+int64(len(m.Payload))+40 {
		select {
		case err := <-errc:
			t.Fatalf("Publish returned %v while the broker's replies were held", err)
		default:
			runtime.Gosched()
		}
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with its ctx cancelled while the confirm was held: %v, want context.Canceled", err)
	}
	// Now make invoice.* routable, then let the held return and confirm in.
	binder := newPub(t, url, amqp.WithBindingKey("invoice.*"), amqp.WithCompetingConsumers())
	if err := binder.Declare(ctx, topic, "h"); err != nil {
		t.Fatal(err)
	}
	px.Release()
	if err := p.Publish(ctx, topic, m.Clone()); err != nil {
		t.Fatalf("the same message, now routable, published again: %v (the abandoned call's return was matched to it)", err)
	}
}
