package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestBrokerRestart restarts the real RabbitMQ (scripts/services.sh
// restart rabbitmq) while a publisher and a subscriber run: both
// reconnect by themselves, and every message whose Publish returned nil is
// handled (durable queue, persistent messages, confirms).
func TestBrokerRestart(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	pst, sst := newStates(), newStates()
	p := newPub(t, url, fastReconnect, amqp.WithOnStateChange(pst.record))
	s := newSub(t, url, fastReconnect, amqp.WithGroup("g"), amqp.WithConcurrency(4), amqp.WithOnStateChange(sst.record))
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	var mu sync.Mutex
	var confirmed []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Paced (at most 500 a second), not for synchronisation: the
		// restart below waits for the exclusive broker lock, behind every
		// other package's broker tests in a full run, and an unpaced
		// publisher piled up 84,000 messages meanwhile.
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			m := &message.Message{ID: fmt.Sprintf("m%d", i), Key: fmt.Sprint(i % 4)}
			pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := p.Publish(pctx, topic, m)
			cancel()
			if err != nil {
				var pe *message.PublishError
				if errors.As(err, &pe) {
					continue // reported, not lost: the caller may retry
				}
				t.Errorf("publish %s: %v", m.ID, err)
				return
			}
			mu.Lock()
			confirmed = append(confirmed, m.ID)
			mu.Unlock()
		}
	}()
	c.waitN(t, 50)
	testenv.RestartService(t, "rabbitmq")
	pst.waitCount(t, amqp.StateConnected, 2)
	sst.waitCount(t, amqp.StateConnected, 2)
	mu.Lock()
	before := len(confirmed)
	mu.Unlock()
	// Keep publishing until 50 more were confirmed after the restart.
	deadline := time.Now().Add(wait)
	for {
		mu.Lock()
		n := len(confirmed)
		mu.Unlock()
		if n >= before+50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing did not resume after the restart: %d confirmed before, %d now", before, n)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter with a deadline
	}
	close(stop)
	<-done
	mu.Lock()
	ids := append([]string(nil), confirmed...)
	mu.Unlock()
	got := c.waitIDs(t, ids)
	t.Logf("%d confirmed, %d deliveries", len(ids), len(got))
}
