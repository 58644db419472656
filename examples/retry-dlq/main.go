// Command retry-dlq shows ferry's error policy: retry in process with
// backoff, then delayed retry tiers outside the topic, then a dead-letter
// topic, then a replay once the cause is fixed. It is Spring Kafka's
// DefaultErrorHandler + @RetryableTopic + DeadLetterPublishingRecoverer in
// one policy, the same on every broker.
//
//	go run ./examples/retry-dlq [-broker kafka://127.0.0.1:9092 | amqp://guest:guest@127.0.0.1:5672/]
//
// A payment service charges six payments from the payments topic. Its
// policy: 3 attempts in process (20 ms backoff, doubling), then the delay
// tiers payments-retry-200 and payments-retry-500 (200 ms and 500 ms; Kafka
// topics named as Spring's retry topics, RabbitMQ wait queues with a TTL
// and a dead-letter exchange back to the payments queue), then
// payments.DLT. retry.Policy.Subscribe consumes the topic and both tiers
// with one call.
//
//   - p-2 meets a fraud check that is down for a while. Its 3 quick
//     attempts fail; it then leaves the topic for payments-retry-200 (the
//     payments behind it go on meanwhile), comes back 200 ms later with
//     Delivery.Tier 1 and is charged.
//   - p-3 hits a card processor that times out for good: 3 attempts in
//     process, one from each tier, then payments.DLT with error headers
//     and its history (5 attempts, the last tier).
//   - p-5 has a negative amount. The handler marks that error
//     retry.Permanent: no retries, no tiers, straight to payments.DLT.
//
// An ops consumer reads payments.DLT and prints what the headers say
// (retry.ParseDeadLetter). Then the processor recovers and retry.Replay
// moves the timed-out payment (not the invalid one) back to payments, where
// it is charged. The last line is the result:
//
//	result: charged=5 dead-lettered=2 replayed=1 (p-3 charged after replay; p-5 stays on payments.DLT)
package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
	"github.com/ferrymsg/ferry/runner"
)

// errTimeout is the card processor's outage: a transient error, worth
// retrying.
var errTimeout = errors.New("card processor timeout")

// errFraudDown is the fraud check's outage: it lasts longer than the
// in-process retries, but not longer than the first delay tier.
var errFraudDown = errors.New("fraud check unavailable")

func main() { broker.Main("retry-dlq", run) }

func run(ctx context.Context, brokerURL string) error {
	b, err := broker.Open(ctx, brokerURL)
	if err != nil {
		return err
	}
	defer b.Close()
	topic := b.Topic("payments")
	dlt := topic + retry.DefaultDeadLetterSuffix
	fmt.Printf("retry-dlq: %s broker, topic %s, dead letters to %s\n", b.Kind, topic, dlt)
	if err := b.Prepare(ctx, topic, "payment-service"); err != nil {
		return err
	}
	if err := b.Prepare(ctx, dlt, "ops", "dlt-replay"); err != nil {
		return err
	}

	var (
		processorUp atomic.Bool
		charged     = newCounter()
		deadLetters = newCounter()
	)

	// The payment service's handler: a plain function that returns an error.
	charge := func(ctx context.Context, msg *message.Message) error {
		amount := string(msg.Payload)
		switch {
		case strings.HasPrefix(amount, "-"):
			return retry.Permanent(fmt.Errorf("invalid amount %s", amount))
		case msg.ID == "p-3" && !processorUp.Load():
			return errTimeout
		case msg.ID == "p-2" && msg.Delivery.Tier == 0:
			return errFraudDown // back up by the time p-2 returns from its tier
		}
		if t := msg.Delivery.Tier; t > 0 {
			fmt.Printf("payment-service  charged %s: %s (attempt %d, back from tier %d)\n", msg.ID, amount, msg.Delivery.Attempt, t)
		} else {
			fmt.Printf("payment-service  charged %s: %s\n", msg.ID, amount)
		}
		charged.add(msg.ID)
		return nil
	}
	policy, err := retry.NewPolicy(
		retry.WithMaxAttempts(3), // in process, on the topic
		retry.WithExponentialBackoff(20*time.Millisecond, 200*time.Millisecond),
		retry.WithDelayedRetry(b.Publisher(), 200*time.Millisecond, 500*time.Millisecond),
		retry.WithDeadLetter(b.Publisher()), // after the last tier: <topic>.DLT
		retry.OnRetry(func(_ context.Context, ev retry.RetryEvent) {
			if ev.Tier > 0 {
				fmt.Printf("payment-service  %s attempt %d failed: %v -> %s (tier %d, due in %v; the payments behind it go on)\n",
					ev.Message.ID, ev.Attempt, ev.Err, ev.TierTopic, ev.Tier, ev.Delay)
				return
			}
			fmt.Printf("payment-service  %s attempt %d failed: %v (retrying)\n", ev.Message.ID, ev.Attempt, ev.Err)
		}),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) {
			fmt.Printf("payment-service  %s gave up after %d attempt(s): %v -> %s\n", ev.Message.ID, ev.Attempts, ev.Err, ev.Topic)
		}),
	)
	if err != nil {
		return err
	}

	// The ops team's dead-letter consumer.
	report := func(ctx context.Context, msg *message.Message) error {
		info, err := retry.ParseDeadLetter(msg)
		if err != nil {
			return retry.Permanent(err)
		}
		history := ""
		if t, ok := msg.Headers[retry.HeaderTier]; ok {
			history = fmt.Sprintf(" %s=%s", retry.HeaderTier, t) // the last delay tier it went through
		}
		fmt.Printf("ops              dead letter %s from %s (group %s): %s=%d %s=%q%s\n",
			msg.ID, info.Topic, info.Group, retry.HeaderAttempts, info.Attempts, retry.HeaderErrorMessage, info.Error, history)
		deadLetters.add(msg.ID)
		return nil
	}

	// The two services on one runner; the scenario is a task of it,
	// started once both consume (on RabbitMQ a message sent to a tier
	// nobody declared yet would be unroutable and retried later).
	svc, err := runner.New(runner.WithSignals()) // broker.Main turns signals into ctx
	if err != nil {
		return err
	}
	paySub, err := b.Subscriber("payment-service", 4)
	if err != nil {
		return err
	}
	// The topic and its two tiers, with the same handler chain.
	if err := svc.Add("payment-service", tiered{paySub, policy}, topic, charge, policy.Middleware()); err != nil {
		return err
	}
	opsSub, err := b.Subscriber("ops", 4)
	if err != nil {
		return err
	}
	if err := svc.Add("ops", opsSub, dlt, report); err != nil {
		return err
	}
	var stats retry.ReplayStats
	if err := svc.Go("scenario", func(ctx context.Context) error {
		defer svc.Stop()
		amounts := []string{"12.50", "99.00", "42.00", "7.25", "-5.00", "310.00"}
		for i, a := range amounts {
			msg := &message.Message{ID: fmt.Sprintf("p-%d", i+1), Key: fmt.Sprintf("acct-%d", i+1), Payload: []byte(a)}
			if err := b.Publisher().Publish(ctx, topic, msg); err != nil {
				return err
			}
		}
		// Four payments go through (p-2 from its tier); two end on the
		// dead-letter topic.
		if err := waitFor(ctx, charged, 4, "charged payments"); err != nil {
			return err
		}
		if err := waitFor(ctx, deadLetters, 2, "dead letters"); err != nil {
			return err
		}

		// The processor is back: replay what timed out, leave the invalid one.
		processorUp.Store(true)
		fmt.Println("card processor is back: replaying the timed-out payments from", dlt)
		replaySub, err := b.Subscriber("dlt-replay", 1)
		if err != nil {
			return err
		}
		stats, err = retry.Replay(ctx, replaySub, b.Publisher(), dlt,
			retry.WithFilter(func(_ *message.Message, info retry.DeadLetterInfo) bool {
				return strings.Contains(info.Error, errTimeout.Error())
			}),
			retry.WithLimit(1),                    // we know there is one: stop as soon as it is back
			retry.WithIdleTimeout(30*time.Second), // a safety net
		)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		return waitFor(ctx, charged, 5, "charged payments")
	}); err != nil {
		return err
	}
	if err := svc.Run(ctx); err != nil || ctx.Err() != nil {
		return errors.Join(err, context.Cause(ctx)) // a failure, or the timeout or Ctrl-C
	}
	if !charged.has("p-3") || charged.has("p-5") {
		return fmt.Errorf("charged %v: want p-3 charged after the replay and p-5 never", charged.ids())
	}
	fmt.Printf("result: charged=%d dead-lettered=%d replayed=%d (p-3 charged after replay; p-5 stays on %s)\n",
		charged.len(), deadLetters.len(), stats.Replayed, dlt)
	return nil
}

// tiered is a subscriber that consumes a topic and its delay tiers, as
// the policy's Subscribe does, so that the runner runs all of them as one
// subscription.
type tiered struct {
	message.Subscriber
	policy *retry.Policy
}

func (t tiered) Subscribe(ctx context.Context, topic string, h message.Handler) error {
	return t.policy.Subscribe(ctx, t.Subscriber, topic, h)
}

// counter is a set of message IDs that a waiter can watch grow.
type counter struct {
	mu   sync.Mutex
	seen map[string]bool
	grew chan struct{}
}

func newCounter() *counter { return &counter{seen: map[string]bool{}, grew: make(chan struct{}, 1)} }

func (c *counter) add(id string) {
	c.mu.Lock()
	c.seen[id] = true
	c.mu.Unlock()
	select {
	case c.grew <- struct{}{}:
	default:
	}
}

func (c *counter) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.seen) }

func (c *counter) has(id string) bool { c.mu.Lock(); defer c.mu.Unlock(); return c.seen[id] }

func (c *counter) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id := range c.seen {
		out = append(out, id)
	}
	return out
}

// waitFor blocks until c holds n IDs or ctx ends.
func waitFor(ctx context.Context, c *counter, n int, what string) error {
	for c.len() < n {
		select {
		case <-c.grew:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d %s (have %d): %w", n, what, c.len(), context.Cause(ctx))
		}
	}
	return nil
}
