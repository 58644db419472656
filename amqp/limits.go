package amqp

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// ErrBrokerClosedConnection reports a message that made the broker close
// the publisher's connection each time it was published alone
// (maxConnectionKills times in a row), so it is not published again. It
// is listed for that message in a *message.PublishError, together with
// message.ErrInvalidMessage and the broker's *amqp091.Error.
var ErrBrokerClosedConnection = errors.New("amqp: the broker closes the connection whenever this message is published")

// maxConnectionKills is how many times in a row a message published alone
// may make the broker close the connection before it fails with
// ErrBrokerClosedConnection.
const maxConnectionKills = 3

// Sizes of the AMQP content header frame (AMQP 0-9-1, 4.2.6.1): the frame
// header (type, channel, size) and end octet, and the fixed fields before
// the property list (class id, weight, body size, property flags).
const (
	frameOverhead  = 1 + 2 + 4 + 1
	headerFixedLen = 2 + 2 + 8 + 2
)

// checkFrames is false only in tests that need a message with a header
// frame over frame_max to reach the broker.
var checkFrames = true

// headerFrameSize returns the size of the content header frame that
// carries p's properties (the header table included). The frame is never
// split: it must fit in the connection's frame_max, or the broker closes
// the connection (FRAME_ERROR).
func headerFrameSize(p *amqp091.Publishing) int {
	n := frameOverhead + headerFixedLen
	for _, s := range [...]string{p.ContentType, p.ContentEncoding, p.CorrelationId, p.ReplyTo, p.Expiration, p.MessageId, p.Type, p.UserId, p.AppId} {
		if s != "" {
			n += 1 + len(s)
		}
	}
	if len(p.Headers) > 0 {
		n += tableSize(p.Headers)
	}
	if p.DeliveryMode > 0 {
		n++
	}
	if p.Priority > 0 {
		n++
	}
	if !p.Timestamp.IsZero() {
		n += 8
	}
	return n
}

// tableSize is the encoded size of an AMQP field table (its 4-byte length
// included), as amqp091-go writes it.
func tableSize(t amqp091.Table) int {
	n := 4
	for k, v := range t {
		n += 1 + len(k) + fieldSize(v)
	}
	return n
}

// fieldSize is the encoded size of one field value, its type octet
// included. Types the client cannot write count as 1 (Publish then fails
// on Table.Validate before anything is sent).
func fieldSize(v any) int {
	switch x := v.(type) {
	case bool, byte, int8:
		return 2
	case int16, uint16:
		return 3
	case int, int32, uint32, float32:
		return 5
	case int64, float64, time.Time:
		return 9
	case amqp091.Decimal:
		return 6
	case string:
		return 5 + len(x)
	case []byte:
		return 5 + len(x)
	case []any:
		n := 5
		for _, e := range x {
			n += fieldSize(e)
		}
		return n
	case amqp091.Table:
		return 1 + tableSize(x)
	}
	return 1
}

// frameFits reports whether p's header frame fits in frameMax (0: no
// limit), and the frame's size.
func frameFits(p *amqp091.Publishing, frameMax int) (int, bool) {
	if frameMax <= 0 || !checkFrames {
		return 0, true
	}
	n := headerFrameSize(p)
	return n, n <= frameMax
}

// tooLargeFrame is the error of a message whose properties do not fit in
// one frame.
func tooLargeFrame(i, n int, m *message.Message, size, frameMax int) error {
	return fmt.Errorf("amqp: %w: message #%d of %d (id %q): its header table and properties take a %d-byte frame, "+
		"the connection's frame_max is %d (RabbitMQ would close the connection); shorten the headers or raise frame_max",
		message.ErrMessageTooLarge, i, n, m.ID, size, frameMax)
}

// maxSizeRefusal matches RabbitMQ's refusal of a message over
// max_message_size (rabbit_channel:check_msg_size), which closes the
// channel with PRECONDITION_FAILED.
var maxSizeRefusal = regexp.MustCompile(`message size (\d+) is larger than (?:configured )?max size (\d+)`)

// brokerSizeLimit returns the broker's max_message_size when err is its
// refusal of a message over it.
func brokerSizeLimit(err error) (int, bool) {
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != amqp091.PreconditionFailed {
		return 0, false
	}
	sm := maxSizeRefusal.FindStringSubmatch(ae.Reason)
	if sm == nil {
		return 0, false
	}
	limit, err2 := strconv.Atoi(sm[2])
	if err2 != nil || limit <= 0 {
		return 0, false
	}
	return limit, true
}

// tooLargeForBroker is the error of a message the broker refused (or
// would refuse) as over its max_message_size; cause is the broker's
// error, nil when the limit was learned from an earlier refusal.
func tooLargeForBroker(i, n int, m *message.Message, limit int, cause error) error {
	if cause == nil {
		return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a %d-byte payload, the broker's max_message_size is %d", message.ErrMessageTooLarge, i, n, m.ID, len(m.Payload), limit)
	}
	return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a %d-byte payload, the broker's max_message_size is %d: %w", message.ErrMessageTooLarge, i, n, m.ID, len(m.Payload), limit, cause)
}

// brokerKilledConnection reports a connection the broker closed with an
// error of its own (a frame or syntax error, say), as opposed to a network
// failure, a heartbeat timeout, or a broker shutting down
// (CONNECTION_FORCED): the kind of loss that a message can cause.
func brokerKilledConnection(err error) bool {
	var ae *amqp091.Error
	return errors.As(err, &ae) && ae.Server && ae.Code != amqp091.ConnectionForced
}

// connectionKiller is the error of a message that made the broker close
// the connection every time it was published alone.
func connectionKiller(i, n int, m *message.Message, times int, cause error) error {
	return fmt.Errorf("amqp: %w: %w: message #%d of %d (id %q): the broker closed the connection each of the %d times it was published alone, not published again: %w",
		message.ErrInvalidMessage, ErrBrokerClosedConnection, i, n, m.ID, times, cause)
}
