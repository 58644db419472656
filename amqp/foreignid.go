package amqp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// ForeignIDPrefix starts the ID that a delivered message without a
// message_id property (from a producer other than ferry) is given: the
// prefix and 32 hex digits, 128 bits of the SHA-256 of the topic and of
// what the broker keeps unchanged across redeliveries of the stored
// message (see DerivedID).
const ForeignIDPrefix = "amqp-"

// brokerHeaders are the headers RabbitMQ adds or changes on a stored
// message (quorum redeliveries, dead-lettering, shovels, federation):
// DerivedID leaves them out, so that a message keeps its ID when it comes
// back through a dead-letter cycle.
var brokerHeaders = []string{
	"x-delivery-count", "x-death",
	"x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
	"x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
	"x-received-from",
}

// DerivedID returns the ID ferry gives a delivery of topic that has no
// message_id: ForeignIDPrefix and 32 hex digits of the SHA-256 of the
// topic, the body, the header table (except the headers the broker adds:
// x-delivery-count, x-death, x-first-death-*, x-last-death-*,
// x-received-from) and the properties (content type and encoding,
// delivery mode, priority, correlation id, reply-to, expiration,
// timestamp, type, user id, app id). AMQP has no offset, but all of these
// are the same on every redelivery of one stored message, so the ID is
// too, and the dedupe middleware can tell a redelivery. Two messages
// published with the same body, headers and properties get the same ID,
// and dedupe takes the second for a redelivery of the first: a producer
// whose identical messages must each be processed should set message_id
// (or a timestamp or a header that differs).
func DerivedID(topic string, d *amqp091.Delivery) string {
	h := sha256.New()
	str := func(s string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	str(topic)
	str(string(d.Body))
	for _, s := range []string{d.ContentType, d.ContentEncoding, d.CorrelationId, d.ReplyTo, d.Expiration, d.Type, d.UserId, d.AppId} {
		str(s)
	}
	var b [10]byte
	b[0], b[1] = d.DeliveryMode, d.Priority
	if !d.Timestamp.IsZero() {
		binary.BigEndian.PutUint64(b[2:], uint64(d.Timestamp.Unix()))
	}
	h.Write(b[:])
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		if !slices.Contains(brokerHeaders, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		str(k)
		hashValue(h, str, d.Headers[k])
	}
	var sum [sha256.Size]byte
	return ForeignIDPrefix + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// hashValue adds a header value, its type included, so that the string
// "1" and the number 1 differ.
func hashValue(h hash.Hash, str func(string), v any) {
	t := fmt.Sprintf("%T", v)
	t = strings.TrimPrefix(t, "amqp091.")
	str(t)
	str(HeaderString(v))
}
