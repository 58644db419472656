package codec

import (
	"context"
	"fmt"
	"maps"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// ContentTypeHeaderer is implemented by publishers that carry the content
// type in a header of their own: the AMQP adapter's *amqp.Publisher
// returns amqp.ContentTypeHeader, its content-type property. A publisher
// that wraps another (tracing, metrics) should pass the wrapped one's
// answer on, and answer "" (HeaderContentType is used) when the wrapped
// one has none.
type ContentTypeHeaderer interface {
	ContentTypeHeader() string
}

// Publisher publishes values of T: it encodes each with its Codec and
// sets the content type header (and, with WithTypeID, the type id header)
// on the message. It is safe for concurrent use. It does not own the
// message.Publisher it writes through: close that one yourself.
type Publisher[T any] struct {
	pub     message.Publisher
	codec   Codec[T]
	headers map[string]string // content type, type id, WithHeader
}

// PublisherOption configures a Publisher.
type PublisherOption func(*pubConfig)

type pubConfig struct {
	ctHeader string
	headers  map[string]string
}

// WithTypeID writes name into HeaderTypeID (__TypeId__) on every message,
// for consumers that pick the payload's class from it: Spring Kafka's
// JsonDeserializer and Spring AMQP's Jackson converters (a fully
// qualified Java class name from their trusted packages, or an alias of
// their type mapper). Default: no type id header.
func WithTypeID(name string) PublisherOption {
	return func(c *pubConfig) { c.headers[HeaderTypeID] = name }
}

// WithContentTypeHeader names the header the content type goes into.
// Default: what the publisher's ContentTypeHeader method says
// (ContentTypeHeaderer; AMQP: the content-type property), otherwise
// HeaderContentType.
func WithContentTypeHeader(name string) PublisherOption {
	return func(c *pubConfig) { c.ctHeader = name }
}

// WithHeader writes the header name: value on every message (for example
// the AMQP content-encoding "UTF-8" Spring's converters write). Headers a
// caller sets on a message from Message win. Default: none.
func WithHeader(name, value string) PublisherOption {
	return func(c *pubConfig) { c.headers[name] = value }
}

// NewPublisher returns a Publisher of T that encodes with c and publishes
// through pub. A nil (or typed-nil) pub or c, or an empty header name, is
// an error wrapping message.ErrInvalidConfig. Nil options are ignored.
func NewPublisher[T any](pub message.Publisher, c Codec[T], opts ...PublisherOption) (*Publisher[T], error) {
	if isnil.Is(pub) {
		return nil, fmt.Errorf("codec: NewPublisher: %w: the publisher is nil (%T)", message.ErrInvalidConfig, pub)
	}
	if isnil.Is(c) {
		return nil, fmt.Errorf("codec: NewPublisher: %w: the codec is nil (%T)", message.ErrInvalidConfig, c)
	}
	cfg := pubConfig{ctHeader: HeaderContentType, headers: map[string]string{}}
	if h, ok := pub.(ContentTypeHeaderer); ok && h.ContentTypeHeader() != "" {
		cfg.ctHeader = h.ContentTypeHeader()
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	for name := range cfg.headers {
		if name == "" {
			return nil, fmt.Errorf("codec: NewPublisher: %w: WithHeader with an empty name", message.ErrInvalidConfig)
		}
	}
	if cfg.ctHeader == "" {
		return nil, fmt.Errorf("codec: NewPublisher: %w: empty content type header name", message.ErrInvalidConfig)
	}
	if v, ok := cfg.headers[HeaderTypeID]; ok && v == "" {
		return nil, fmt.Errorf("codec: NewPublisher: %w: WithTypeID with an empty name", message.ErrInvalidConfig)
	}
	cfg.headers[cfg.ctHeader] = c.ContentType()
	return &Publisher[T]{pub: pub, codec: c, headers: cfg.headers}, nil
}

// Message returns the message that Publish would publish for v with the
// ordering key key: the encoded payload and the publisher's headers. Set
// its ID (for dedupe), more headers or its Time, then publish it with the
// underlying message.Publisher, alone or in a batch. An encoding error
// wraps message.ErrInvalidMessage and names T.
func (p *Publisher[T]) Message(key string, v T) (*message.Message, error) {
	if p == nil || p.pub == nil {
		return nil, fmt.Errorf("codec: %w: a zero Publisher (use NewPublisher)", message.ErrInvalidConfig)
	}
	b, err := p.codec.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T as %s: %w: %w", v, p.codec.ContentType(), message.ErrInvalidMessage, err)
	}
	return &message.Message{Key: key, Payload: b, Headers: maps.Clone(p.headers)}, nil
}

// Publish encodes v and publishes it to topic with the ordering key key
// (empty: no ordering). It returns when the broker has accepted it, as
// message.Publisher.Publish does, with its errors, or the encoding error
// (see Message), in which case nothing is published.
func (p *Publisher[T]) Publish(ctx context.Context, topic, key string, v T) error {
	m, err := p.Message(key, v)
	if err != nil {
		return err
	}
	return p.pub.Publish(ctx, topic, m)
}

// NewMessage returns a message holding v encoded with c, with the ordering
// key key and c's content type in HeaderContentType, for code that hands
// messages to something other than a Publisher, such as the
// transactional outbox (outbox.Write): set its ID or more headers, then
// pass it on. An encoding error wraps message.ErrInvalidMessage, a nil c
// message.ErrInvalidConfig.
func NewMessage[T any](c Codec[T], key string, v T) (*message.Message, error) {
	if isnil.Is(c) {
		return nil, fmt.Errorf("codec: NewMessage: %w: the codec is nil (%T)", message.ErrInvalidConfig, c)
	}
	b, err := c.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T as %s: %w: %w", v, c.ContentType(), message.ErrInvalidMessage, err)
	}
	return &message.Message{Key: key, Payload: b, Headers: map[string]string{HeaderContentType: c.ContentType()}}, nil
}
