// Command ordered-concurrency shows keyed, ordered concurrency: one
// subscriber runs up to 16 handlers at once, yet messages with the same key
// are never handled at the same time and always in publish order,
// redeliveries included. That is what a Kafka partition gives a Spring
// listener with concurrency=1, without one thread per partition.
//
//	go run ./examples/ordered-concurrency [-broker kafka://127.0.0.1:9092 | amqp://guest:guest@127.0.0.1:5672/]
//
// The producer publishes 1000 account events over 40 keys (accounts), each
// carrying its sequence number within its account. The handler takes about
// a millisecond, and fails the first attempt of each account's 7th event,
// which the subscriber redelivers after a short backoff, before that
// account's 8th. While it runs, the handler
// measures how many handlers run at once (overall, and per key) and checks
// that each account's events arrive as 1, 2, 3, ... The last line is the
// evidence:
//
//	result: messages=1000 keys=40 concurrency=16 max-parallel=16 same-key-overlaps=0 order-violations=0 redelivered=40
package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/runner"
)

const (
	keys        = 40
	perKey      = 25
	concurrency = 16
)

func main() { broker.Main("ordered-concurrency", run) }

// evidence is what the handler observes.
type evidence struct {
	mu          sync.Mutex
	running     int            // handlers running now
	maxParallel int            // the most seen at once
	keyRunning  map[string]int // handlers running now, per key
	overlaps    int            // a handler started while another ran with its key
	next        map[string]int // the sequence number each key should see next
	violations  int            // a key's event arrived out of order
	redelivered int
	done        int
	allDone     func() // stops the service
}

func run(ctx context.Context, brokerURL string) error {
	b, err := broker.Open(ctx, brokerURL)
	if err != nil {
		return err
	}
	defer b.Close()
	topic := b.Topic("account-events")
	fmt.Printf("ordered-concurrency: %s broker, topic %s, %d keys × %d events, concurrency %d\n", b.Kind, topic, keys, perKey, concurrency)
	if err := b.Prepare(ctx, topic, "ledger"); err != nil {
		return err
	}

	svc, err := runner.New(runner.WithSignals()) // broker.Main turns signals into ctx
	if err != nil {
		return err
	}
	ev := &evidence{keyRunning: map[string]int{}, next: map[string]int{}, allDone: svc.Stop}
	handle := func(ctx context.Context, msg *message.Message) error {
		seq, err := strconv.Atoi(string(msg.Payload))
		if err != nil {
			return err
		}
		ev.mu.Lock()
		ev.running++
		ev.maxParallel = max(ev.maxParallel, ev.running)
		ev.keyRunning[msg.Key]++
		if ev.keyRunning[msg.Key] > 1 {
			ev.overlaps++
		}
		if want := ev.next[msg.Key] + 1; seq != want {
			ev.violations++
			fmt.Printf("order violation: %s got event %d, expected %d\n", msg.Key, seq, want)
		}
		ev.mu.Unlock()

		time.Sleep(time.Millisecond) // the work
		fail := seq == 7 && msg.Delivery.Attempt == 1

		ev.mu.Lock()
		defer ev.mu.Unlock()
		ev.running--
		ev.keyRunning[msg.Key]--
		if fail {
			ev.redelivered++
			return fmt.Errorf("transient failure of %s #%d", msg.Key, seq) // redelivered, before the key's next event
		}
		ev.next[msg.Key] = seq
		ev.done++
		if ev.done == keys*perKey {
			ev.allDone()
		}
		return nil
	}

	// The ledger service, and a producer that starts once it consumes.
	// The service stops when every event is handled (or at the timeout,
	// or on Ctrl-C), after a graceful drain.
	sub, err := b.Subscriber("ledger", concurrency)
	if err != nil {
		return err
	}
	if err := svc.Add("ledger", sub, topic, handle); err != nil {
		return err
	}
	// Publish in rounds: event 1 of every account, then event 2, ... so
	// that the keys interleave in the stream.
	if err := svc.Go("producer", func(ctx context.Context) error {
		for seq := 1; seq <= perKey; seq++ {
			batch := make([]*message.Message, 0, keys)
			for k := range keys {
				batch = append(batch, &message.Message{Key: fmt.Sprintf("acct-%02d", k), Payload: []byte(strconv.Itoa(seq))})
			}
			if err := b.Publisher().Publish(ctx, topic, batch...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := svc.Run(ctx); err != nil {
		return err
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.done < keys*perKey {
		return fmt.Errorf("handled %d of %d events: %w", ev.done, keys*perKey, context.Cause(ctx))
	}
	fmt.Printf("result: messages=%d keys=%d concurrency=%d max-parallel=%d same-key-overlaps=%d order-violations=%d redelivered=%d\n",
		ev.done, keys, concurrency, ev.maxParallel, ev.overlaps, ev.violations, ev.redelivered)
	if ev.overlaps != 0 || ev.violations != 0 {
		return errors.New("per-key order was broken")
	}
	return nil
}
