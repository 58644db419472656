package codec

import (
	"context"
	"fmt"
	"mime"
	"strings"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// Headers the typed helpers read and write.
const (
	// HeaderContentType carries the content type on Kafka and in memory:
	// Publisher writes the codec's ContentType there, and Decode checks it.
	// The name is Spring's MessageHeaders.CONTENT_TYPE, the header Spring
	// Cloud Stream writes on Kafka records.
	HeaderContentType = "contentType"
	// HeaderAMQPContentType is the AMQP adapter's header for the message's
	// content-type property (amqp.ContentTypeHeader): Publisher writes it
	// on an AMQP publisher, so the content type travels in content_type,
	// where Spring AMQP's converters read it. Decode reads it too.
	HeaderAMQPContentType = "amqp-content-type"
	// HeaderTypeID names the payload's type for a consumer that needs one
	// to pick a class: Spring Kafka's JsonSerializer/JsonDeserializer and
	// Spring AMQP's Jackson converters write and read it (a Java class
	// name, or a mapped alias). Publisher writes it with WithTypeID; Decode
	// ignores it, since T already says what the payload is.
	HeaderTypeID = "__TypeId__"
)

// DecodeError reports a delivered payload that a Codec cannot decode, or
// whose content type header names a type the codec does not read. It is a
// permanent failure: the retry middleware sees it as retry.Permanent
// (errors.As(err, new(*retry.PermanentError)) is true), so the message
// goes to the dead-letter topic after this one attempt, unchanged, with
// the error text in the dead-letter headers and "*codec.DecodeError" as
// the error type.
type DecodeError struct {
	// Topic and ID are the delivered message's.
	Topic, ID string
	// ContentType is the message's content type header, "" when it has
	// none; Want is the codec's ContentType.
	ContentType, Want string
	// Err is the codec's error, or why the content type was refused.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string {
	ct := ""
	if e.ContentType != "" {
		ct = fmt.Sprintf(" (content type %q)", e.ContentType)
	}
	return fmt.Sprintf("codec: message %q on %q%s is not %s: %v", e.ID, e.Topic, ct, e.Want, e.Err)
}

// Unwrap returns Err.
func (e *DecodeError) Unwrap() error { return e.Err }

// As makes a DecodeError a *retry.PermanentError for errors.As, so that
// the retry middleware dead-letters it without retrying (retry.IsPermanent
// is true), while the dead-letter headers still name *codec.DecodeError.
func (e *DecodeError) As(target any) bool {
	if p, ok := target.(**retry.PermanentError); ok {
		*p = &retry.PermanentError{Err: e}
		return true
	}
	return false
}

// Permanent reports true: a payload that cannot be decoded never will
// be. Subscribers that reject a message outright (a Kafka share group,
// kafka.WithShareGroup) look for this method; the retry middleware finds
// the *retry.PermanentError that As makes.
func (e *DecodeError) Permanent() bool { return true }

// ContentType returns msg's content type header: HeaderContentType, or
// HeaderAMQPContentType when that is absent; "" when it has neither.
func ContentType(msg *message.Message) string {
	if msg == nil {
		return ""
	}
	if ct := msg.Headers[HeaderContentType]; ct != "" {
		return ct
	}
	return msg.Headers[HeaderAMQPContentType]
}

// Decode decodes msg's payload with c. A content type header (see
// ContentType) must name a media type c accepts (Accepter; by default the
// media type of c.ContentType, parameters such as charset ignored); a
// message without one is decoded as it is, since Spring Kafka's
// JsonSerializer and many other producers write none. Every error is a
// *DecodeError, except for a nil c or msg (message.ErrInvalidConfig,
// message.ErrInvalidMessage).
func Decode[T any](c Codec[T], msg *message.Message) (T, error) {
	var zero T
	if isnil.Is(c) {
		return zero, fmt.Errorf("codec: Decode: %w: the codec is nil", message.ErrInvalidConfig)
	}
	if msg == nil {
		return zero, fmt.Errorf("codec: Decode: %w: nil message", message.ErrInvalidMessage)
	}
	ct := ContentType(msg)
	if ct != "" {
		if err := accepts(c, ct); err != nil {
			return zero, &DecodeError{Topic: msg.Delivery.Topic, ID: msg.ID, ContentType: ct, Want: c.ContentType(), Err: err}
		}
	}
	v, err := c.Decode(msg.Payload)
	if err != nil {
		return zero, &DecodeError{Topic: msg.Delivery.Topic, ID: msg.ID, ContentType: ct, Want: c.ContentType(), Err: err}
	}
	return v, nil
}

// accepts checks the content type ct against c.
func accepts[T any](c Codec[T], ct string) error {
	if ct == c.ContentType() {
		return nil // what a Publisher of this codec wrote: no parsing
	}
	// Some Kafka producers (Spring Cloud Stream's JSON header mapping)
	// quote string header values.
	mt, _, err := mime.ParseMediaType(strings.Trim(ct, `"`))
	if err != nil {
		return fmt.Errorf("malformed content type: %w", err)
	}
	if a, ok := c.(Accepter); ok {
		if a.Accepts(mt) {
			return nil
		}
	} else if want, _, err := mime.ParseMediaType(c.ContentType()); err == nil && want == mt {
		return nil
	}
	return fmt.Errorf("the codec does not read %s", mt)
}

// Handler returns a message.Handler that decodes each message's payload
// with c (see Decode) and calls fn with the value and the message (for
// its ID, Key, Headers and Delivery). fn's error is the handler's: nil
// settles the message, an error or a panic redelivers it, as for any
// handler. A payload that does not decode never reaches fn: the handler
// returns the *DecodeError, which the retry middleware dead-letters at
// once (put retry outside: message.Chain(codec.Handler(c, fn), retryMW)).
// Without the retry middleware the subscriber redelivers it like any
// failed message, since nothing is dropped by default.
//
// A nil c or fn gives a handler that fails every message with an error
// wrapping message.ErrInvalidConfig (never a panic), so the subscriber
// keeps the messages and logs why.
func Handler[T any](c Codec[T], fn func(ctx context.Context, v T, msg *message.Message) error) message.Handler {
	if isnil.Is(c) || fn == nil {
		err := fmt.Errorf("codec: Handler: %w: the codec and the function must not be nil (codec %T)", message.ErrInvalidConfig, c)
		return func(context.Context, *message.Message) error { return err }
	}
	return func(ctx context.Context, msg *message.Message) error {
		v, err := Decode(c, msg)
		if err != nil {
			return err
		}
		return fn(ctx, v, msg)
	}
}
