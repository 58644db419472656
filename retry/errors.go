package retry

import (
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"
)

var (
	// ErrNotDeadLetter is returned by ParseDeadLetter for a message that
	// carries neither ferry's nor Spring Kafka's original-topic header.
	ErrNotDeadLetter = errors.New("retry: not a dead-letter message (no original-topic header)")

	// ErrMalformedHeader is wrapped by every *HeaderError, so a malformed
	// dead-letter header can be checked with errors.Is.
	ErrMalformedHeader = errors.New("retry: malformed dead-letter header")
)

// PermanentError marks a handler error that must not be retried: the
// middleware dead-letters the message at once (or, without a dead-letter
// publisher, returns the error at once). Create it with Permanent.
type PermanentError struct {
	// Err is the wrapped error.
	Err error
}

// Error implements error.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true: the error is permanent. Subscribers that can
// reject a message outright (a Kafka share group, kafka.WithShareGroup)
// look for this method in a handler error's chain instead of importing
// retry.
func (e *PermanentError) Permanent() bool { return true }

// Permanent wraps err so that the retry middleware skips the remaining
// attempts. Permanent(nil) is nil. Errors wrapped with backoff.Permanent from
// github.com/cenkalti/backoff/v4 are treated the same way.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked with
// Permanent or backoff.Permanent.
func IsPermanent(err error) bool {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return true
	}
	var be *backoff.PermanentError
	return errors.As(err, &be)
}

// HeaderError reports a dead-letter header that ParseDeadLetter cannot
// read. It wraps ErrMalformedHeader.
type HeaderError struct {
	// Header is the header name.
	Header string
	// Value is the raw header value.
	Value string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *HeaderError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("retry: malformed dead-letter header %q (value %q): %s", e.Header, v, e.Reason)
}

// Unwrap returns ErrMalformedHeader.
func (e *HeaderError) Unwrap() error { return ErrMalformedHeader }
