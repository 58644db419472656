package message

import (
	"errors"
	"fmt"
	"time"
)

// RedeliverAfterError is a handler error that also says when the message
// is to be delivered again: After from the moment the handler returned,
// in place of the subscriber's own redelivery backoff. Create it with
// RedeliverAfter. The retry middleware returns it between attempts, so
// that the wait happens in the subscriber's dispatcher, not in a sleeping
// handler.
//
// Every ferry subscriber honours it the same way as any handler error,
// only with this delay: the message is not settled, it is redelivered
// with Delivery.Attempt one higher, before any later message of its key,
// and no worker is held while it waits (the other keys go on). The wait
// keeps the message in memory and, on Kafka, holds back the partition's
// commit point, so keep After short (seconds, not hours): for long waits
// take the retry middleware's delayed tiers. An After of 0 or less
// redelivers at once.
type RedeliverAfterError struct {
	// Err is the handler's error, the reason of the redelivery.
	Err error
	// After is how long to wait before the redelivery.
	After time.Duration
}

// RedeliverAfter wraps err so that the subscriber delivers the message
// again after d instead of after its own backoff. RedeliverAfter(nil, d) is
// nil: a nil error settles the message.
func RedeliverAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RedeliverAfterError{Err: err, After: d}
}

// Error implements error: the wrapped error's text.
func (e *RedeliverAfterError) Error() string {
	if e == nil {
		return "ferry: redeliver after <nil>"
	}
	if e.Err == nil {
		return fmt.Sprintf("ferry: redeliver after %v", e.After)
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *RedeliverAfterError) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// RedeliveryDelay returns the delay of the outermost *RedeliverAfterError
// in err's chain (0 for a negative one), and whether there is one; a nil
// *RedeliverAfterError does not count. Subscribers call it on a handler
// error to choose the wait before the redelivery.
func RedeliveryDelay(err error) (time.Duration, bool) {
	var re *RedeliverAfterError
	if !errors.As(err, &re) || re == nil {
		return 0, false
	}
	return max(re.After, 0), true
}
