package adapter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// A Publish implementation checks and completes its messages first.
func ExamplePrepare() {
	msgs := []*message.Message{{Payload: []byte("a")}, {ID: "given", Payload: []byte("b")}}
	if err := adapter.Prepare("orders", msgs); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(msgs[0].ID), msgs[1].ID, !msgs[0].Time.IsZero())

	err := adapter.Prepare("orders", []*message.Message{nil})
	fmt.Println(errors.Is(err, message.ErrInvalidMessage))
	// Output:
	// 36 given true
	// true
}

// A panicking handler becomes an error, so the message is redelivered.
func ExampleCall() {
	err := adapter.Call(context.Background(), func(ctx context.Context, m *message.Message) error {
		panic("nil pointer in business code")
	}, &message.Message{})
	var pe *message.PanicError
	fmt.Println(errors.As(err, &pe), strings.Contains(err.Error(), "nil pointer in business code"))
	// Output: true true
}

// Kafka's topic rules, shared by the kafka and inmem adapters.
func ExampleValidateLogTopic() {
	fmt.Println(adapter.ValidateLogTopic("orders.v1"))
	fmt.Println(adapter.ValidateLogTopic("orders/v1"))
	// Output:
	// <nil>
	// ferry: invalid topic: topic name "orders/v1" has illegal character '/' at byte 6 (Kafka allows letters, digits, '.', '_' and '-')
}

// A subscriber's lifecycle: Close cancels the running Subscribe calls and
// waits for them.
func ExampleLifecycle() {
	var life adapter.Lifecycle
	done := make(chan error)
	ready := make(chan struct{})
	go func() { // a Subscribe call
		ctx, end, err := life.Begin(context.Background())
		if err != nil {
			done <- err
			return
		}
		defer end()
		close(ready)
		<-ctx.Done() // consume until cancelled, then drain
		done <- context.Cause(ctx)
	}()
	<-ready
	go life.Close()
	fmt.Println(<-done)
	_, _, err := life.Begin(context.Background())
	fmt.Println(err)
	// Output:
	// ferry: closed
	// ferry: closed
}
