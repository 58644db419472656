package main

// These tests show how to test a service of your own on the in-memory
// broker, the way we want users to: publish an event, wait until the
// service's group has settled it (no sleep, no sentinel message), then
// assert on what the service did and on what it published, dead letters
// included.

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// orderEvent is an OrderPlaced as the order service publishes it.
func orderEvent(t *testing.T, o OrderPlaced) *message.Message {
	t.Helper()
	payload, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return &message.Message{ID: eventID(o.OrderID), Key: o.CustomerID, Payload: payload}
}

func TestInventoryReservesAndDeadLettersUnknownSKU(t *testing.T) {
	ctx := context.Background()
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}

	// The service under test, wired as in production: its handler behind
	// the retry policy, dead letters to order-events.DLT.
	st := newStory(io.Discard, false, 2)
	inv := newInventory(st)
	policy, err := retry.New(retry.WithMaxAttempts(maxAttempts), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := inmem.NewSubscriber(b, inmem.WithGroup(inventoryGroup), inmem.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	svcCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sub.Subscribe(svcCtx, "order-events", message.Chain(inv.reserve, policy)) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	good := OrderPlaced{OrderID: "o-1", CustomerID: "alice", Seq: 1, Items: []Item{{SKU: "BOOK-GO", Quantity: 2}}}
	poison := OrderPlaced{OrderID: "o-2", CustomerID: "alice", Seq: 2, Items: []Item{{SKU: discontinued, Quantity: 1}}}
	if err := pub.Publish(ctx, "order-events", orderEvent(t, good), orderEvent(t, poison)); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.WaitSettled(waitCtx, "order-events", inventoryGroup); err != nil {
		t.Fatal(err)
	}

	inv.mu.Lock()
	left := inv.stock["BOOK-GO"]
	inv.mu.Unlock()
	if left != 98 {
		t.Errorf("BOOK-GO stock %d, want 98 after reserving 2", left)
	}
	dead, err := b.Messages("order-events" + retry.DefaultDeadLetterSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != eventID("o-2") {
		t.Fatalf("dead letters %v, want just %s", dead, eventID("o-2"))
	}
	info, err := retry.ParseDeadLetter(dead[0])
	if err != nil {
		t.Fatal(err)
	}
	if info.Attempts != maxAttempts || info.Group != inventoryGroup || !strings.Contains(info.Error, "unknown SKU") {
		t.Errorf("dead letter: %+v", info)
	}
	if lag, err := b.Lag("order-events", inventoryGroup); err != nil || lag.Total != 0 {
		t.Errorf("lag %+v, %v after settling", lag, err)
	}
}

// The smallest test: one event through the notification service's chain,
// without a broker.
func TestNotificationService(t *testing.T) {
	st := newStory(io.Discard, false, 1)
	out, err := inmem.Handle(context.Background(), st.notify, "order-events",
		orderEvent(t, OrderPlaced{OrderID: "o-1", CustomerID: "bob", Seq: 1}), inmem.HandleGroup(notificationGroup))
	if err != nil || out.Attempts != 1 {
		t.Fatalf("%+v, %v", out, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.notified != 1 || st.sequence[notificationGroup]["bob"][0] != "o-1" {
		t.Fatalf("notified %d, sequence %v", st.notified, st.sequence[notificationGroup])
	}
}

// A payload that is not an OrderPlaced is dead-lettered after one attempt:
// decode marks it permanent.
func TestUndecodableEventIsDeadLetteredAtOnce(t *testing.T) {
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	policy, err := retry.New(retry.WithMaxAttempts(maxAttempts), retry.WithDeadLetter(pub))
	if err != nil {
		t.Fatal(err)
	}
	st := newStory(io.Discard, false, 1)
	out, err := inmem.Handle(context.Background(), message.Chain(st.notify, policy), "order-events",
		&message.Message{ID: "junk", Payload: []byte("not json")}, inmem.HandleGroup(notificationGroup))
	if err != nil || out.Attempts != 1 {
		t.Fatalf("%+v, %v: want settled after one attempt", out, err)
	}
	dead, _ := b.Messages("order-events" + retry.DefaultDeadLetterSuffix)
	if len(dead) != 1 || string(dead[0].Payload) != "not json" {
		t.Fatalf("dead letters %v", dead)
	}
	if info, err := retry.ParseDeadLetter(dead[0]); err != nil || info.Attempts != 1 {
		t.Fatalf("%+v, %v", info, err)
	}
}
