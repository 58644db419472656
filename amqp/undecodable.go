package amqp

import (
	"fmt"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// A delivery that amqp091-go cannot decode (a header table nested deeper
// than its 32 levels, a frame over the negotiated frame_max) makes the
// client close the whole connection. The broker requeues the message at
// the head of its queue and sends it again as soon as consuming resumes,
// so the connection dies again right away, for ever: the queue does not
// move. The supervisor recognises such losses by the client's own decode
// error (never a network failure: those have other causes), counts them
// in a row, reports each one as ErrUndecodableDelivery, logs an Error
// that says what to do, and keeps its reconnection backoff growing
// instead of starting again at the initial interval.

// undecodableAlarm is the streak at which the Error log is written (and
// every undecodableAlarmEvery losses after it).
const (
	undecodableAlarm      = 3
	undecodableAlarmEvery = 10
)

// stableConnection is how long a connection must have lived for its loss
// to start a new streak.
var stableConnection = time.Minute

// isUndecodable reports a connection the client closed because it could
// not decode a frame from the broker. The client's reader turns the decode
// error (ErrSyntax, ErrFrame, ErrFrameTooLarge) into an *amqp091.Error
// with code FRAME_ERROR, the decode error's text as reason, not from the
// server.
func isUndecodable(e *amqp091.Error) bool {
	if e == nil || e.Server || e.Code != amqp091.FrameError {
		return false
	}
	for _, d := range []*amqp091.Error{amqp091.ErrSyntax, amqp091.ErrFrame, amqp091.ErrFrameTooLarge} {
		if strings.Contains(e.Reason, d.Reason) {
			return true
		}
	}
	return false
}

// undecodableStreak counts undecodable connection losses in a row.
type undecodableStreak struct{ n int }

// observe takes a connection loss (e its cause, nil if none, lived how
// long the connection was up) and returns the streak it belongs to, 0 if
// it is no undecodable loss.
func (s *undecodableStreak) observe(e *amqp091.Error, lived time.Duration) int {
	if !isUndecodable(e) {
		s.n = 0
		return 0
	}
	if lived >= stableConnection {
		s.n = 0
	}
	s.n++
	return s.n
}

// alarm reports whether the n-th loss of a streak is logged at Error.
func (s *undecodableStreak) alarm() bool {
	return s.n == undecodableAlarm || s.n > undecodableAlarm && (s.n-undecodableAlarm)%undecodableAlarmEvery == 0
}

// undecodableCause is the cause reported for the n-th undecodable loss in
// a row.
func undecodableCause(n int, cause error) error {
	return fmt.Errorf("%w (%d in a row; a message that amqp091-go cannot read is at the head of a queue this connection consumes): %w", ErrUndecodableDelivery, n, cause)
}
