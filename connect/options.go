package connect

import (
	"fmt"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// Option configures Open: programmatic options applied after the URL's
// query parameters, so they win where both set the same thing. An option
// for another adapter than the URL's is ignored, so that one list of
// options serves every URL a service may be given. A nil Option is
// skipped.
type Option interface {
	applyOpen(*openConfig) error
}

// SubscriberOption configures Broker.NewSubscriber: applied after the
// URL's query parameters and the Open options, so it wins. An option for
// another adapter than the URL's is ignored. A nil SubscriberOption is
// skipped.
type SubscriberOption interface {
	applySubscriber(*subConfig) error
}

// SharedOption is both: given to Open it sets the default of every
// subscriber the Broker makes; given to NewSubscriber, that subscriber's.
type SharedOption interface {
	Option
	SubscriberOption
}

type openConfig struct {
	kafka    []kafka.Option
	kafkaPub []kafka.PublisherOption
	amqp     []amqp.Option
	amqpPub  []amqp.PublisherOption
	inmem    []inmem.BrokerOption
	mem      *inmem.Broker
	sub      subConfig
}

type subConfig struct {
	kafka []kafka.SubscriberOption
	amqp  []amqp.SubscriberOption
	inmem []inmem.SubscriberOption
}

type (
	openOpt   func(*openConfig) error
	sharedOpt func(*subConfig) error
)

func (o openOpt) applyOpen(c *openConfig) error {
	if o == nil {
		return nil
	}
	return o(c)
}

func (o sharedOpt) applyOpen(c *openConfig) error { return o.applySubscriber(&c.sub) }

func (o sharedOpt) applySubscriber(c *subConfig) error {
	if o == nil {
		return nil
	}
	return o(c)
}

// WithKafka adds kafka adapter options for both the publisher and the
// subscribers (kafka.WithClientOptions for TLS or SASL settings the URL
// cannot carry, kafka.WithLogger, ...). Used only for a kafka:// URL.
// Default: none.
func WithKafka(opts ...kafka.Option) Option {
	opts = append([]kafka.Option(nil), opts...)
	return openOpt(func(c *openConfig) error { c.kafka = append(c.kafka, opts...); return nil })
}

// WithKafkaPublisher adds kafka publisher options. Used only for a
// kafka:// URL. Default: none.
func WithKafkaPublisher(opts ...kafka.PublisherOption) Option {
	opts = append([]kafka.PublisherOption(nil), opts...)
	return openOpt(func(c *openConfig) error { c.kafkaPub = append(c.kafkaPub, opts...); return nil })
}

// WithKafkaSubscriber adds kafka subscriber options. Used only for a
// kafka:// URL. Default: none.
func WithKafkaSubscriber(opts ...kafka.SubscriberOption) SharedOption {
	opts = append([]kafka.SubscriberOption(nil), opts...)
	return sharedOpt(func(c *subConfig) error { c.kafka = append(c.kafka, opts...); return nil })
}

// WithAMQP adds amqp adapter options for both the publisher and the
// subscribers (amqp.WithConfig for TLS, amqp.WithQueueArgs,
// amqp.WithLogger, ...). Used only for an amqp:// or amqps:// URL.
// Default: none.
func WithAMQP(opts ...amqp.Option) Option {
	opts = append([]amqp.Option(nil), opts...)
	return openOpt(func(c *openConfig) error { c.amqp = append(c.amqp, opts...); return nil })
}

// WithAMQPPublisher adds amqp publisher options. Used only for an amqp://
// or amqps:// URL. Default: none.
func WithAMQPPublisher(opts ...amqp.PublisherOption) Option {
	opts = append([]amqp.PublisherOption(nil), opts...)
	return openOpt(func(c *openConfig) error { c.amqpPub = append(c.amqpPub, opts...); return nil })
}

// WithAMQPSubscriber adds amqp subscriber options. Used only for an
// amqp:// or amqps:// URL. Default: none.
func WithAMQPSubscriber(opts ...amqp.SubscriberOption) SharedOption {
	opts = append([]amqp.SubscriberOption(nil), opts...)
	return sharedOpt(func(c *subConfig) error { c.amqp = append(c.amqp, opts...); return nil })
}

// WithInmem adds options of the in-memory broker Open creates. Used only
// for an inmem:// URL. Default: none.
func WithInmem(opts ...inmem.BrokerOption) Option {
	opts = append([]inmem.BrokerOption(nil), opts...)
	return openOpt(func(c *openConfig) error { c.inmem = append(c.inmem, opts...); return nil })
}

// WithInmemBroker makes an inmem:// URL use b instead of a new in-memory
// broker, so that several Open calls (or code holding b) share one
// broker; Broker.Close then does not close b. The URL may not also set
// partitions or retention (they configure a new broker), nor may WithInmem
// be given. Used only for an inmem:// URL. Default: Open creates a broker
// of its own, closed by Broker.Close.
func WithInmemBroker(b *inmem.Broker) Option {
	return openOpt(func(c *openConfig) error {
		if b == nil {
			return fmt.Errorf("connect: %w: WithInmemBroker(nil): want a broker", message.ErrInvalidConfig)
		}
		c.mem = b
		return nil
	})
}

// WithInmemSubscriber adds inmem subscriber options. Used only for an
// inmem:// URL. Default: none.
func WithInmemSubscriber(opts ...inmem.SubscriberOption) SharedOption {
	opts = append([]inmem.SubscriberOption(nil), opts...)
	return sharedOpt(func(c *subConfig) error { c.inmem = append(c.inmem, opts...); return nil })
}

// WithGroup sets the subscribers' group, on every adapter (the URL's
// group parameter does the same). Default: "default".
func WithGroup(name string) SharedOption {
	return sharedOpt(func(c *subConfig) error {
		if name == "" {
			return fmt.Errorf("connect: %w: WithGroup(%q): the group name is empty", message.ErrInvalidConfig, name)
		}
		c.kafka = append(c.kafka, kafka.WithGroup(name))
		c.amqp = append(c.amqp, amqp.WithGroup(name))
		c.inmem = append(c.inmem, inmem.WithGroup(name))
		return nil
	})
}

// WithConcurrency sets the subscribers' handler concurrency, at least 1,
// on every adapter (the URL's concurrency parameter does the same).
// Default: 1.
func WithConcurrency(n int) SharedOption {
	return sharedOpt(func(c *subConfig) error {
		if n < 1 {
			return fmt.Errorf("connect: %w: WithConcurrency(%d): want at least 1", message.ErrInvalidConfig, n)
		}
		c.kafka = append(c.kafka, kafka.WithConcurrency(n))
		c.amqp = append(c.amqp, amqp.WithConcurrency(n))
		c.inmem = append(c.inmem, inmem.WithConcurrency(n))
		return nil
	})
}
