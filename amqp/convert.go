package amqp

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/message"
)

// deliveryCountHeader is the quorum queue's count of earlier deliveries.
const deliveryCountHeader = "x-delivery-count"

// Message headers that stand for AMQP basic properties (see the package
// doc, Message mapping): "amqp-" and the property's name in the AMQP 0-9-1
// specification. On publish such a header sets the property and is not
// written to the header table; on delivery each property that is set
// becomes its header, and a header-table entry with one of these names
// (ferry never writes one) is dropped. An empty value is the same as no
// header. Every other header, "amqp-" prefix or not, is an ordinary
// header-table entry.
const (
	// ContentTypeHeader is the content-type property, a MIME type such
	// as "application/json" (what Spring AMQP's JSON converters require).
	ContentTypeHeader = "amqp-content-type"
	// ContentEncodingHeader is the content-encoding property, such as
	// "UTF-8" (Spring's charset) or "gzip".
	ContentEncodingHeader = "amqp-content-encoding"
	// CorrelationIDHeader is the correlation-id property (request/reply).
	CorrelationIDHeader = "amqp-correlation-id"
	// ReplyToHeader is the reply-to property: where a reply should go.
	ReplyToHeader = "amqp-reply-to"
	// TypeHeader is the type property, the message type name.
	TypeHeader = "amqp-type"
	// AppIDHeader is the app-id property, the producing application.
	AppIDHeader = "amqp-app-id"
	// UserIDHeader is the user-id property, which RabbitMQ checks against
	// the publishing connection's user. It is delivered but never
	// published: forwarding a delivered message (a dead-letter copy, a
	// replay) under another user would make the broker close the channel.
	UserIDHeader = "amqp-user-id"
	// PriorityHeader is the priority property, 0 to 255 in decimal
	// (priority queues use it; 0 is the default and is not delivered).
	PriorityHeader = "amqp-priority"
	// ExpirationHeader is the expiration property, the message's TTL in
	// milliseconds, a non-negative decimal integer. RabbitMQ's upper
	// bound applies (4294967295 in its source, more on some versions):
	// above it the broker closes the channel and the message fails.
	ExpirationHeader = "amqp-expiration"
	// DeliveryModeHeader is the delivery-mode property: "1" transient,
	// "2" persistent. Publish makes messages persistent unless it is
	// "1"; on delivery it is present, as "1", only for a message that is
	// not persistent (delivery mode 1, or not set by its producer).
	DeliveryModeHeader = "amqp-delivery-mode"
)

// propPrefix starts every property header's name.
const propPrefix = "amqp-"

// isPropName reports whether k may be a property header (a cheap test
// before the switch).
func isPropName(k string) bool {
	return len(k) > len(propPrefix) && k[:len(propPrefix)] == propPrefix
}

// checkProperty reports what is wrong with property header k's value v,
// or "" when it may be published (or k is no property header).
func checkProperty(k, v string) string {
	if v == "" {
		return ""
	}
	switch k {
	case ContentTypeHeader, ContentEncodingHeader, CorrelationIDHeader, ReplyToHeader, TypeHeader, AppIDHeader:
		if len(v) > maxNameLen {
			return fmt.Sprintf("is %d bytes, AMQP allows %d", len(v), maxNameLen)
		}
	case PriorityHeader:
		if _, err := strconv.ParseUint(v, 10, 8); err != nil {
			return "is not a priority from 0 to 255"
		}
	case ExpirationHeader:
		// Syntax only: RabbitMQ's bound differs between versions, and a
		// delivered message must always be publishable again.
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return "is not a TTL in milliseconds (a non-negative decimal integer)"
		}
	case DeliveryModeHeader:
		if v != "1" && v != "2" {
			return `is not a delivery mode, "1" (transient) or "2" (persistent)`
		}
	}
	return ""
}

// isPropHeader reports whether k is one of the property headers.
func isPropHeader(k string) bool {
	switch k {
	case ContentTypeHeader, ContentEncodingHeader, CorrelationIDHeader, ReplyToHeader, TypeHeader,
		AppIDHeader, UserIDHeader, PriorityHeader, ExpirationHeader, DeliveryModeHeader:
		return true
	}
	return false
}

// setProperty sets the property that header k stands for from v and
// reports whether k is a property header. v has passed checkProperty.
func setProperty(p *amqp091.Publishing, k, v string) bool {
	switch k {
	case ContentTypeHeader:
		p.ContentType = v
	case ContentEncodingHeader:
		p.ContentEncoding = v
	case CorrelationIDHeader:
		p.CorrelationId = v
	case ReplyToHeader:
		p.ReplyTo = v
	case TypeHeader:
		p.Type = v
	case AppIDHeader:
		p.AppId = v
	case UserIDHeader:
		// delivered only, never published (see UserIDHeader)
	case PriorityHeader:
		n, _ := strconv.ParseUint(v, 10, 8)
		p.Priority = uint8(n)
	case ExpirationHeader:
		p.Expiration = v
	case DeliveryModeHeader:
		if v == "1" {
			p.DeliveryMode = amqp091.Transient
		}
	default:
		return false
	}
	return true
}

// checkMessage reports what of m cannot be published.
func (c *config) checkMessage(i, n int, m *message.Message) error {
	if m == nil {
		return fmt.Errorf("amqp: %w: message #%d of %d is nil", message.ErrInvalidMessage, i, n)
	}
	if len(m.Payload) > c.maxPayload {
		return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a %d-byte payload, the limit is %d", message.ErrMessageTooLarge, i, n, m.ID, len(m.Payload), c.maxPayload)
	}
	for k, v := range m.Headers {
		if len(k) > maxNameLen {
			return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a header name of %d bytes, AMQP allows %d", message.ErrInvalidMessage, i, n, m.ID, len(k), maxNameLen)
		}
		if isPropName(k) {
			if why := checkProperty(k, v); why != "" {
				return fmt.Errorf("amqp: %w: message #%d of %d (id %q): header %s %q %s", message.ErrInvalidMessage, i, n, m.ID, k, v, why)
			}
		}
	}
	if len(m.ID) > maxNameLen {
		return fmt.Errorf("amqp: %w: message #%d of %d has a %d-byte id, AMQP message_id allows %d", message.ErrInvalidMessage, i, n, len(m.ID), maxNameLen)
	}
	return nil
}

// publishing maps m to an AMQP message: ID to message_id, Time to
// timestamp (seconds) and, unless the ID is a UUIDv7 of Time's
// millisecond, the ferry-time header (milliseconds), Key to the
// key header, property headers to their properties, the other Headers to
// the header table; persistent delivery mode unless DeliveryModeHeader
// says "1". m has passed checkMessage.
func (c *config) publishing(m *message.Message) amqp091.Publishing {
	p := amqp091.Publishing{
		DeliveryMode: amqp091.Persistent,
		MessageId:    m.ID,
		Timestamp:    m.Time,
		Body:         m.Payload,
	}
	h := make(amqp091.Table, len(m.Headers)+3)
	for k, v := range m.Headers {
		if isPropName(k) && setProperty(&p, k, v) {
			continue
		}
		h[k] = v
	}
	if m.Key != "" {
		h[c.keyHeader] = m.Key
	} else {
		delete(h, c.keyHeader)
	}
	if !timeInID(m.ID, m.Time) {
		h[TimeHeader] = m.Time.UnixMilli()
	}
	h[bucketHeaders[ShardBucket(shardKey(m.Key, m.ID))]] = "1"
	p.Headers = h
	return p
}

// toMessage maps a delivery to a Message. Header values that are not
// strings are converted with HeaderString; nothing about a delivery's
// headers makes it be rejected. The properties that are set become their
// property headers; table entries of those names are dropped, so that
// every delivered message can be published again as it is.
func (c *config) toMessage(topic, group string, d *amqp091.Delivery) *message.Message {
	m := &message.Message{
		ID:      d.MessageId,
		Payload: d.Body,
		Delivery: message.Delivery{
			System:      System,
			Topic:       topic,
			RoutingKey:  d.RoutingKey,
			Group:       group,
			Attempt:     1,
			Partition:   -1,
			Offset:      -1,
			DeliveryTag: d.DeliveryTag,
			Redelivered: d.Redelivered,
		},
	}
	if _, ok := d.Headers[TimeHeader]; !ok {
		m.Time = timeFromID(d.MessageId, d.Timestamp)
	} else if !d.Timestamp.IsZero() {
		m.Time = d.Timestamp
	}
	if d.Redelivered {
		m.Delivery.Attempt = 2
	}
	user := len(d.Headers)
	if _, ok := d.Headers[c.keyHeader]; ok {
		user--
	}
	if _, ok := d.Headers[TimeHeader]; ok {
		user--
	}
	for k := range d.Headers {
		if strings.HasPrefix(k, ShardHeaderPrefix) {
			user--
		}
	}
	if user > 0 {
		m.Headers = make(map[string]string, user)
	}
	for k, v := range d.Headers {
		if strings.HasPrefix(k, ShardHeaderPrefix) || isPropName(k) && isPropHeader(k) && k != c.keyHeader {
			continue
		}
		switch k {
		case c.keyHeader:
			m.Key = HeaderString(v)
			continue
		case TimeHeader:
			if ms, ok := toInt(v); ok {
				m.Time = time.UnixMilli(ms)
				continue
			}
		case deliveryCountHeader:
			if n, ok := toInt(v); ok && n >= 0 && int(n)+1 > m.Delivery.Attempt {
				m.Delivery.Attempt = int(n) + 1
			}
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, 1)
		}
		m.Headers[k] = HeaderString(v)
	}
	propHeaders(m, d)
	if m.ID == "" {
		m.ID = DerivedID(topic, d) // a foreign message: see DerivedID
	}
	delay.ApplyReturned(m, topic, group) // back from a delay tier (delay.go): Delivery.Tier and the earlier attempts
	return m
}

// propHeaders adds the delivery's properties that are set to m.Headers.
func propHeaders(m *message.Message, d *amqp091.Delivery) {
	set := func(k, v string) {
		if v == "" {
			return
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, 4)
		}
		m.Headers[k] = v
	}
	set(ContentTypeHeader, d.ContentType)
	set(ContentEncodingHeader, d.ContentEncoding)
	set(CorrelationIDHeader, d.CorrelationId)
	set(ReplyToHeader, d.ReplyTo)
	set(TypeHeader, d.Type)
	set(AppIDHeader, d.AppId)
	set(UserIDHeader, d.UserId)
	set(ExpirationHeader, d.Expiration)
	if d.Priority != 0 {
		set(PriorityHeader, strconv.Itoa(int(d.Priority)))
	}
	if d.DeliveryMode != amqp091.Persistent {
		set(DeliveryModeHeader, "1")
	}
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case int:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// HeaderString converts an AMQP header value to the string a Message
// header holds: strings and byte arrays as they are, numbers in decimal,
// booleans as "true"/"false", timestamps in RFC 3339 (UTC), decimals in
// decimal notation, void as "", and tables and arrays (such as x-death) as
// JSON with their values converted the same way.
func HeaderString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case amqp091.Decimal:
		return decimalString(x)
	case amqp091.Table, []any:
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
	if n, ok := toInt(v); ok {
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprint(v)
}

func decimalString(d amqp091.Decimal) string {
	r := new(big.Rat).SetFrac(big.NewInt(int64(d.Value)), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale)), nil))
	return r.FloatString(int(d.Scale))
}

// jsonable turns a table or array into values encoding/json renders the
// way HeaderString renders scalars.
func jsonable(v any) any {
	switch x := v.(type) {
	case amqp091.Table:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = jsonable(e)
		}
		return a
	case string, bool, nil:
		return x
	case float32, float64:
		return x
	}
	if n, ok := toInt(v); ok {
		return n
	}
	return HeaderString(v)
}
