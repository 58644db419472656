package message

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Adapters wrap them with context, so check with errors.Is.
var (
	// ErrClosed is returned by Publish and Subscribe after Close.
	ErrClosed = errors.New("ferry: closed")
	// ErrInvalidTopic reports an empty topic or a name the broker rejects.
	ErrInvalidTopic = errors.New("ferry: invalid topic")
	// ErrInvalidMessage reports a nil message or a field the broker cannot
	// carry (for example a header the broker rejects).
	ErrInvalidMessage = errors.New("ferry: invalid message")
	// ErrMessageTooLarge reports a message over the broker's size limit.
	ErrMessageTooLarge = errors.New("ferry: message too large")
	// ErrNilHandler is returned by Subscribe when the handler is nil.
	ErrNilHandler = errors.New("ferry: nil handler")
	// ErrInvalidConfig reports a bad option value given to a constructor.
	ErrInvalidConfig = errors.New("ferry: invalid configuration")
	// ErrUnroutable reports a published message that no queue received
	// (AMQP mandatory publish returned by the broker).
	ErrUnroutable = errors.New("ferry: message unroutable")
	// ErrTopicNotFound reports a topic that does not exist where the
	// adapter was configured not to create it.
	ErrTopicNotFound = errors.New("ferry: topic not found")
	// ErrRedeliver, wrapped in a handler's error, says "not now" without
	// saying anything is wrong with the message: the subscriber delivers it
	// again later, and middleware passes it through instead of retrying or
	// dead-lettering it. The dedupe middleware returns it (as
	// dedupe.ErrInProgress) when another consumer holds the message.
	ErrRedeliver = errors.New("ferry: redeliver later")
)

// FailedMessage is one message of a batch that was not published.
type FailedMessage struct {
	// Index is the position of the message in the Publish call.
	Index int
	// Message is the message that failed.
	Message *Message
	// Err is why it failed.
	Err error
}

// PublishError reports the messages of a Publish call that failed. The
// others were published. Retry just the failed ones:
//
//	var pe *message.PublishError
//	if errors.As(err, &pe) { retry(pe.Messages()) }
//
// errors.Is and errors.As see through it to each message's error.
type PublishError struct {
	// Topic is the topic of the Publish call.
	Topic string
	// Failed lists the failed messages in call order.
	Failed []FailedMessage
	// Total is the number of messages in the Publish call.
	Total int
}

// Error implements error.
func (e *PublishError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ferry: publish to %q: %d of %d messages failed", e.Topic, len(e.Failed), e.Total)
	for i, f := range e.Failed {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-i)
			break
		}
		id := ""
		if f.Message != nil {
			id = f.Message.ID
		}
		fmt.Fprintf(&b, "; #%d (id %q): %v", f.Index, id, f.Err)
	}
	return b.String()
}

// Unwrap returns the error of each failed message.
func (e *PublishError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed))
	for _, f := range e.Failed {
		errs = append(errs, f.Err)
	}
	return errs
}

// Messages returns the failed messages, ready to be published again.
func (e *PublishError) Messages() []*Message {
	msgs := make([]*Message, 0, len(e.Failed))
	for _, f := range e.Failed {
		msgs = append(msgs, f.Message)
	}
	return msgs
}

// PanicError is the error a recovered handler panic turns into (every
// subscriber recovers handler panics). The message is redelivered like
// after any other handler error.
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the goroutine stack at the panic.
	Stack []byte
}

// Error implements error.
func (e *PanicError) Error() string {
	return fmt.Sprintf("ferry: handler panic: %v\n%s", e.Value, e.Stack)
}

// Unwrap returns Value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}
