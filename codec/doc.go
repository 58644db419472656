// Package codec gives handlers and publishers typed payloads: a Codec[T]
// encodes a T into a message's payload and decodes it back, and the typed
// helpers do the json.Unmarshal (or any other decoding) that every handler
// would otherwise start with.
//
//	orders := codec.JSON[Order]()
//	h := codec.Handler(orders, func(ctx context.Context, o Order, m *message.Message) error {
//		return reserve(ctx, o)
//	})
//	err := sub.Subscribe(ctx, "orders", message.Chain(h, retryMW))
//
//	pub, err := codec.NewPublisher(brokerPub, orders)
//	err = pub.Publish(ctx, "orders", o.ID, o) // key o.ID, content type application/json
//
// JSON (encoding/json) and StrictJSON are built in; package
// codec/protocodec adds protobuf in a package of its own, so that JSON
// users do not pull in google.golang.org/protobuf. Any type with the three
// methods of Codec is a codec.
//
// # Undecodable payloads
//
// A payload that does not decode will not decode on the next attempt
// either, so Handler returns a *DecodeError, which the retry middleware
// (package retry) treats as retry.Permanent: with retry.WithDeadLetter the
// message goes to the dead-letter topic after exactly one attempt, its
// payload and headers unchanged, the decode error in the dead-letter
// headers (retry.HeaderErrorMessage, and retry.HeaderErrorType
// "*codec.DecodeError"). This is Spring's ErrorHandlingDeserializer
// behaviour (a DeserializationException is not retryable for
// DefaultErrorHandler); Watermill instead retries decode errors like any
// other. Without the retry middleware the subscriber redelivers the
// message, as it does every failed one: ferry drops nothing by default.
// BatchHandler does the same for batch consumers (SubscribeBatch): each
// undecodable message fails alone with its *DecodeError, which
// retry.NewBatch dead-letters, and the typed function gets the rest.
//
// The function given to Handler never sees an undecodable payload, and
// its own errors and panics are ordinary failures: retried, then
// dead-lettered, or redelivered.
//
// A message whose content type header names a media type the codec does
// not read (a protobuf payload on a JSON handler) is refused the same
// way, before decoding; a message without a content type header is
// decoded as it is.
//
// # Headers, and Spring
//
// Publisher writes the codec's content type into a header: on Kafka and
// in memory HeaderContentType ("contentType", the name Spring's
// MessageHeaders and Spring Cloud Stream use); on RabbitMQ the message's
// content_type property (the AMQP adapter's "amqp-content-type" header,
// found through ContentTypeHeaderer), which Spring AMQP's
// Jackson2JsonMessageConverter and JacksonJsonMessageConverter require to
// contain "json". Decode reads either header.
//
// Spring names the Java class of a JSON payload in the __TypeId__ header
// (HeaderTypeID): Spring Kafka's JsonSerializer writes it and its
// JsonDeserializer reads it, as Spring AMQP's converters do on RabbitMQ.
// WithTypeID writes it, so that a Spring consumer builds the right class
// without a default type; a ferry Handler ignores it, since T says what
// the payload is, and so reads Spring's messages, with or without it. The
// interop tests (package interop) run both directions against the real
// Spring classes: Jackson2JsonMessageConverter and
// JacksonJsonMessageConverter on RabbitMQ, JsonSerializer and
// JsonDeserializer (behind ErrorHandlingDeserializer) on Kafka.
//
// # Errors
//
// NewPublisher returns an error wrapping message.ErrInvalidConfig for a
// nil publisher or codec or an empty header name. Publish and Message
// return an error wrapping message.ErrInvalidMessage when the value does
// not encode (nothing is published), and otherwise Publish's own errors.
// Decode and Handler return *DecodeError for an undecodable payload.
package codec
