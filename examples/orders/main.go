// Command orders is ferry's main example: the order-events system of the
// classic Spring Kafka / RabbitMQ tutorial, in Go, on any broker.
//
//	go run ./examples/orders                                      # in memory, no setup
//	go run ./examples/orders -broker kafka://127.0.0.1:9092
//	go run ./examples/orders -broker amqp://guest:guest@127.0.0.1:5672/
//	go run ./examples/orders -trace                               # and print the poison order's spans
//
// The order service publishes 20 OrderPlaced events (JSON) to order-events,
// keyed by customer ID so that each customer's orders stay in order. Three
// services consume every event, each in its own consumer group, four
// handlers at a time:
//
//   - notification-service "emails" an order confirmation;
//   - inventory-service reserves stock; one order contains a SKU the
//     warehouse does not stock, so its handler fails: the retry middleware
//     tries it 3 times, then publishes it to order-events.DLT with error
//     headers and moves on (Spring's DefaultErrorHandler with a
//     DeadLetterPublishingRecoverer);
//   - analytics-service totals the revenue, as a batch consumer (Spring's
//     batch listener): up to 16 events per call, a customer's events in
//     order (analytics.go).
//
// The order service also sends one event twice with the same message ID, as
// a producer does when it retries after a lost acknowledgement. Every
// consumer is idempotent (the dedupe middleware on a memory store) and
// skips the second copy. A fourth group, dlt-monitor, reads the
// dead-letter topic and reports the failure from its headers
// (retry.ParseDeadLetter).
//
// The services are typed handlers (codec.Handler over codec.JSON of
// OrderPlaced: no json.Unmarshal in them, and a payload that is not an
// OrderPlaced goes to the DLT after one attempt), run as one service by a
// runner.Runner, with the order service a runner task that starts once
// every group consumes.
//
// The program counts: it stops when every service has accounted for every
// event (handled, skipped as a duplicate, or dead-lettered) and the
// monitor has reported the dead letter, then prints each customer's orders
// in the order each service handled them and a summary line whose counts
// are the same on every broker:
//
//	summary: placed=20 published=21 notified=20 reserved=19 dead-lettered=1 dlt-reported=1 duplicates-skipped=3 ...
//
// The counts add up: 21 messages were published (20 orders and the
// duplicate), and each group accounts for all 21: notification 20 sent + 1
// duplicate skipped; inventory 19 reserved + 1 dead-lettered + 1 skipped;
// analytics 20 recorded + 1 skipped. It exits 1 if that takes longer than
// -timeout. Ctrl-C (SIGINT) or SIGTERM stops it gracefully: the services
// stop fetching, let running handlers finish, settle them, and the
// program exits 0.
//
// On Kafka and RabbitMQ each run uses fresh topic names (a run ID suffix),
// so leftovers of earlier runs never change the counts; see
// examples/internal/broker.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
	"github.com/ferrymsg/ferry/runner"
)

// maxAttempts is how many times a failing event is handled before it is
// dead-lettered.
const maxAttempts = 3

func main() {
	brokerURL := broker.Flag()
	pace := flag.Duration("pace", 20*time.Millisecond, "pause between two orders placed")
	timeout := flag.Duration("timeout", time.Minute, "exit 1 if the scenario has not completed by then")
	verbose := flag.Bool("v", false, "print every event each service handles")
	trace := flag.Bool("trace", false, "trace with OpenTelemetry (otelferry) and print the spans of the poison order, "+poisonOrder+", with the stdout exporter")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *brokerURL, *pace, *timeout, *verbose, *trace); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, brokerURL string, pace, timeout time.Duration, verbose, trace bool) error {
	openCtx, cancelOpen := context.WithTimeout(ctx, timeout)
	b, err := broker.Open(openCtx, brokerURL)
	cancelOpen()
	if err != nil {
		return err
	}
	defer b.Close()

	topic := b.Topic("order-events")
	dlt := topic + retry.DefaultDeadLetterSuffix
	fmt.Fprintf(out, "orders: %s broker %s, topic %s, dead letters to %s\n", b.Kind, b.URL, topic, dlt)

	// RabbitMQ drops messages that no queue is bound for yet: declare the
	// groups' queues before the first publish (a no-op on Kafka and inmem).
	if err := b.Prepare(ctx, topic, notificationGroup, inventoryGroup, analyticsGroup); err != nil {
		return err
	}
	if err := b.Prepare(ctx, dlt, dltGroup); err != nil {
		return err
	}

	orders := placeOrders(time.Now())
	st := newStory(out, verbose, len(orders)+1) // +1: the duplicate
	// -trace: spans per the OpenTelemetry messaging conventions (trace.go).
	tr, err := newTracing(trace)
	if err != nil {
		return err
	}
	pub, err := tr.publisher(b.Publisher())
	if err != nil {
		return err
	}

	// One error policy for every service: 3 attempts 50 ms apart, then the
	// dead-letter topic <topic>.DLT, through the same broker.
	policyOpts := []retry.Option{
		retry.WithMaxAttempts(maxAttempts),
		retry.WithConstantBackoff(50 * time.Millisecond),
		retry.WithDeadLetter(pub),
		retry.WithObserver(tr.observer()),
		retry.OnRetry(st.onRetry),
		retry.OnDeadLetter(st.onDeadLetter),
	}
	policy, err := retry.New(policyOpts...)
	if err != nil {
		return err
	}
	// Every consumer is idempotent. In a real deployment each service has
	// its own store (sqlstore on its database); here, one memory store each.
	idempotent := func(group string) (message.Middleware, error) {
		store, err := dedupe.NewMemoryStore()
		if err != nil {
			return nil, err
		}
		return dedupe.New(store, dedupe.WithObserver(tr.observer()), dedupe.WithOnDuplicate(func(_ context.Context, _ *message.Message, key string) {
			st.skipped(group, key)
		}))
	}
	// The services, each a consumer group of four handlers at a time, run
	// as one: the runner starts them, starts the order service once all of
	// them consume, and stops them all (running handlers finish first)
	// when the story is complete, at the timeout, on Ctrl-C, or when one
	// fails. Retry outside dedupe: each attempt claims the event's ID and
	// a failed attempt releases it, so a dead-lettered event is not marked
	// processed and a replay from the DLT would run it.
	analytics, analyticsStore, err := analyticsHandler(policyOpts, tr.middleware(), st)
	if err != nil {
		return err
	}
	svc, err := runner.New(runner.WithSignals(), runner.WithMiddleware(tr.middleware()), runner.WithClose(analyticsStore))
	if err != nil {
		return err
	}
	inv := newInventory(st)
	for _, s := range []struct {
		group, topic string
		h            message.Handler
		idempotent   bool
	}{
		{notificationGroup, topic, st.notify, true},
		{inventoryGroup, topic, inv.reserve, true},
		{dltGroup, dlt, st.monitorDLT, false},
	} {
		var mw []message.Middleware
		if s.idempotent {
			d, err := idempotent(s.group)
			if err != nil {
				return err
			}
			mw = []message.Middleware{policy, d}
		}
		sub, err := b.Subscriber(s.group, 4)
		if err != nil {
			return err
		}
		if err := svc.Add(s.group, sub, s.topic, s.h, mw...); err != nil {
			return err
		}
	}
	asub, err := b.Subscriber(analyticsGroup, 4)
	if err != nil {
		return err
	}
	if err := svc.AddBatch(analyticsGroup, asub, topic, analytics, analyticsBatchOptions...); err != nil {
		return err
	}
	if err := svc.Go("order-service", func(ctx context.Context) error { return placeAll(ctx, pub, topic, orders, pace, st) }); err != nil {
		return err
	}

	st.onComplete = svc.Stop
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer context.AfterFunc(ctx, func() {
		fmt.Fprintln(out, "orders: interrupted: stopping the services (running handlers finish first)")
	})()
	switch err := svc.Run(runCtx); {
	case err != nil:
		return err
	case ctx.Err() != nil:
		fmt.Fprintf(out, "orders: stopped cleanly after a graceful drain; progress: %s\n", st.progress())
		return nil
	case runCtx.Err() != nil:
		return fmt.Errorf("timed out after %v waiting for the services: %s", timeout, st.progress())
	}
	st.recap(len(orders))
	return tr.print(ctx, out, eventID(poisonOrder))
}

// placeAll is the order service: it publishes one OrderPlaced event per
// order, pace apart, and sends one of them twice.
func placeAll(ctx context.Context, pub message.Publisher, topic string, orders []OrderPlaced, pace time.Duration, st *story) error {
	events, err := codec.NewPublisher(pub, orderEvents, codec.WithHeader("event-type", "OrderPlaced"))
	if err != nil {
		return err
	}
	for i, o := range orders {
		if i > 0 && pace > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pace):
			}
		}
		msg, err := events.Message(o.CustomerID, o) // same customer => same partition, in order
		if err != nil {
			return err
		}
		msg.ID = eventID(o.OrderID) // the dedupe key
		// Publish returns once the broker has the message (acks=all,
		// publisher confirms): a nil error means it cannot be lost.
		if err := pub.Publish(ctx, topic, msg); err != nil {
			return fmt.Errorf("publish %s: %w", o.OrderID, err)
		}
		st.printf("order-service", "placed %s", o)
		if o.OrderID == duplicatedOrder {
			if err := pub.Publish(ctx, topic, msg); err != nil {
				return fmt.Errorf("publish %s again: %w", o.OrderID, err)
			}
			st.printf("order-service", "sent %s again, same message ID (a producer retry after a lost ack)", msg.ID)
		}
	}
	return nil
}
