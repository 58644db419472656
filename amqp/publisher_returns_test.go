package amqp_test

import (
	"context"
	"errors"
	"fmt"
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
