package amqp

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// deliveryCountHeader is the quorum queue's count of earlier deliveries.
const deliveryCountHeader = "x-delivery-count"

// checkMessage reports what of m cannot be published.
func (c *config) checkMessage(i, n int, m *message.Message) error {
	if m == nil {
		return fmt.Errorf("amqp: %w: message #%d of %d is nil", message.ErrInvalidMessage, i, n)
	}
	if len(m.Payload) > c.maxPayload {
		return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a %d-byte payload, the limit is %d", message.ErrMessageTooLarge, i, n, m.ID, len(m.Payload), c.maxPayload)
	}
	for k := range m.Headers {
		if len(k) > maxNameLen {
			return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a header name of %d bytes, AMQP allows %d", message.ErrInvalidMessage, i, n, m.ID, len(k), maxNameLen)
		}
	}
	if len(m.ID) > maxNameLen {
		return fmt.Errorf("amqp: %w: message #%d of %d has a %d-byte id, AMQP message_id allows %d", message.ErrInvalidMessage, i, n, len(m.ID), maxNameLen)
	}
	return nil
}

// publishing maps m to an AMQP message: ID to message_id, Time to
// timestamp (seconds) and the ferry-time header (milliseconds), Key to the
// key header, Headers to the header table; persistent delivery mode.
func (c *config) publishing(m *message.Message) amqp091.Publishing {
	h := make(amqp091.Table, len(m.Headers)+3)
	for k, v := range m.Headers {
		h[k] = v
	}
	if m.Key != "" {
		h[c.keyHeader] = m.Key
	} else {
		delete(h, c.keyHeader)
	}
	h[TimeHeader] = m.Time.UnixMilli()
	h[bucketHeaders[ShardBucket(shardKey(m.Key, m.ID))]] = "1"
	return amqp091.Publishing{
		Headers:      h,
		DeliveryMode: amqp091.Persistent,
		MessageId:    m.ID,
		Timestamp:    m.Time,
		Body:         m.Payload,
	}
}

// toMessage maps a delivery to a Message. Header values that are not
// strings are converted with HeaderString; nothing about a delivery's
// headers makes it be rejected.
func (c *config) toMessage(topic, group string, d *amqp091.Delivery) *message.Message {
	m := &message.Message{
		ID:      d.MessageId,
		Payload: d.Body,
		Delivery: message.Delivery{
			Topic:       topic,
			Group:       group,
			Attempt:     1,
			Partition:   -1,
			Offset:      -1,
			DeliveryTag: d.DeliveryTag,
			Redelivered: d.Redelivered,
		},
	}
	if !d.Timestamp.IsZero() {
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
		if strings.HasPrefix(k, ShardHeaderPrefix) {
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
	return m
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
