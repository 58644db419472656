package inmem

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

func TestSmoke(t *testing.T) {
	b := NewBroker()
	defer b.Close()
	pub := NewPublisher(b)
	ctx := context.Background()
	for i := range 100 {
		if err := pub.Publish(ctx, "t", &message.Message{Key: fmt.Sprint(i % 7), Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := NewSubscriber(b, WithConcurrency(4), WithRedeliveryBackoff(time.Millisecond, 2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	all := make(chan struct{})
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- sub.Subscribe(sctx, "t", func(ctx context.Context, m *message.Message) error {
			if string(m.Payload) == "5" && m.Delivery.Attempt < 3 {
				return errors.New("flaky")
			}
			mu.Lock()
			defer mu.Unlock()
			got[string(m.Payload)]++
			if len(got) == 100 {
				close(all)
			}
			return nil
		})
	}()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatal("timeout")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for k, v := range got {
		if v != 1 {
			t.Fatalf("%s handled %d times", k, v)
		}
	}
}
