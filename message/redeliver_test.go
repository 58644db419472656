package message_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

func TestRedeliverAfter(t *testing.T) {
	cause := errors.New("rate limited")
	if message.RedeliverAfter(nil, time.Second) != nil {
		t.Error("RedeliverAfter(nil, d) is not nil")
	}
	err := fmt.Errorf("outer: %w", message.RedeliverAfter(cause, 3*time.Second))
	if d, ok := message.RedeliveryDelay(err); !ok || d != 3*time.Second {
		t.Errorf("RedeliveryDelay = %v %v, want 3s true", d, ok)
	}
	if !errors.Is(err, cause) || err.Error() != "outer: rate limited" {
		t.Errorf("the cause is not wrapped: %v", err)
	}
	// The outermost delay wins; a negative one is 0.
	nested := message.RedeliverAfter(message.RedeliverAfter(cause, time.Hour), -time.Second)
	if d, ok := message.RedeliveryDelay(nested); !ok || d != 0 {
		t.Errorf("nested RedeliveryDelay = %v %v, want 0 true", d, ok)
	}
	for _, e := range []error{nil, cause, error((*message.RedeliverAfterError)(nil))} {
		if d, ok := message.RedeliveryDelay(e); ok || d != 0 {
			t.Errorf("RedeliveryDelay(%#v) = %v %v, want 0 false", e, d, ok)
		}
	}
	var typedNil *message.RedeliverAfterError
	if typedNil.Error() == "" || typedNil.Unwrap() != nil {
		t.Error("a nil *RedeliverAfterError must not panic")
	}
	if got := (&message.RedeliverAfterError{After: time.Second}).Error(); got != "ferry: redeliver after 1s" {
		t.Errorf("Error without a cause = %q", got)
	}
}
