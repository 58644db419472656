package message_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrymsg/ferry/message"
)

// Middleware wraps a handler; Chain applies them outermost first.
func ExampleChain() {
	logging := func(name string) message.Middleware {
		return func(next message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				fmt.Println("enter", name)
				err := next(ctx, m)
				fmt.Println("leave", name)
				return err
			}
		}
	}
	h := message.Chain(func(ctx context.Context, m *message.Message) error {
		fmt.Println("handle", string(m.Payload))
		return nil
	}, logging("outer"), logging("inner"))

	_ = h(context.Background(), &message.Message{Payload: []byte("order-1")})
	// Output:
	// enter outer
	// enter inner
	// handle order-1
	// leave inner
	// leave outer
}

// A *PublishError lists just the messages that failed, ready to retry.
func ExamplePublishError() {
	var err error = &message.PublishError{
		Topic: "orders",
		Total: 3,
		Failed: []message.FailedMessage{
			{Index: 1, Message: &message.Message{ID: "b"}, Err: message.ErrMessageTooLarge},
		},
	}
	var pe *message.PublishError
	if errors.As(err, &pe) {
		for _, m := range pe.Messages() {
			fmt.Println("retry", m.ID)
		}
	}
	fmt.Println(errors.Is(err, message.ErrMessageTooLarge))
	// Output:
	// retry b
	// true
}

func ExampleNewID() {
	a, b := message.NewID(), message.NewID()
	fmt.Println(len(a), a < b, a[14] == '7')
	// Output: 36 true true
}

// A batch's IDs in one go, in order.
func ExampleNewIDs() {
	var ids []string
	for id := range message.NewIDs(3) {
		ids = append(ids, id)
	}
	fmt.Println(len(ids), ids[0] < ids[1] && ids[1] < ids[2])
	// Output: 3 true
}
