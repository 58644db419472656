// Package protocodec is the protobuf Codec of package codec, in a package
// of its own so that JSON users do not pull in google.golang.org/protobuf:
//
//	orders := protocodec.New[*orderpb.OrderPlaced]()
//	h := codec.Handler(orders, func(ctx context.Context, o *orderpb.OrderPlaced, m *message.Message) error { ... })
//	pub, err := codec.NewPublisher(brokerPub, orders) // content type application/x-protobuf
//
// New uses protobuf's binary wire format (proto.Marshal and
// proto.Unmarshal): unknown fields are kept, so a consumer built from an
// older .proto passes a newer producer's fields on. JSON uses protobuf's
// JSON mapping (protojson) with unknown fields discarded, as codec.JSON
// does, and field names as the .proto's lowerCamelCase JSON names.
//
// T is a generated message type (a pointer, such as *orderpb.OrderPlaced);
// Decode makes a new one for each payload. A payload that does not parse
// is a *codec.DecodeError (through codec.Decode and codec.Handler), so
// the retry middleware dead-letters it after one attempt, unchanged.
package protocodec

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ferrymsg/ferry/codec"
)

// ContentType is the content type of New's payloads. Decode also accepts
// application/protobuf, application/vnd.google.protobuf and
// application/octet-stream.
const ContentType = "application/x-protobuf"

// New returns the binary protobuf Codec of the generated message type T.
func New[T proto.Message]() codec.Codec[T] { return binaryCodec[T]{newer[T]()} }

// JSON returns the Codec of T in protobuf's JSON mapping, content type
// application/json: for consumers that read JSON, such as Spring's JSON
// converters or people.
func JSON[T proto.Message]() codec.Codec[T] { return jsonCodec[T]{newer[T]()} }

// newer returns a function that makes a new T, or an error when T has no
// message type to make one from (an interface type, or a message type
// whose nil value cannot describe itself).
func newer[T proto.Message]() func() (T, error) {
	var zero T
	mt, err := messageType(zero)
	return func() (T, error) {
		if err != nil {
			return zero, err
		}
		m, ok := mt.New().Interface().(T)
		if !ok {
			return zero, fmt.Errorf("protocodec: %v does not make a %T", mt.Descriptor().FullName(), zero)
		}
		return m, nil
	}
}

func messageType[T proto.Message](zero T) (mt protoreflect.MessageType, err error) {
	defer func() {
		if recover() != nil {
			mt, err = nil, fmt.Errorf("protocodec: %T has no message type: use a generated message type such as *orderpb.Order", zero)
		}
	}()
	if any(zero) == nil {
		return nil, fmt.Errorf("protocodec: %T is an interface type: use a generated message type such as *orderpb.Order", zero)
	}
	return zero.ProtoReflect().Type(), nil
}

type binaryCodec[T proto.Message] struct{ make func() (T, error) }

// ContentType implements codec.Codec.
func (binaryCodec[T]) ContentType() string { return ContentType }

// Accepts implements codec.Accepter.
func (binaryCodec[T]) Accepts(mediaType string) bool {
	switch mediaType {
	case ContentType, "application/protobuf", "application/vnd.google.protobuf", "application/octet-stream":
		return true
	}
	return false
}

// Encode implements codec.Codec.
func (binaryCodec[T]) Encode(v T) ([]byte, error) { return proto.Marshal(v) }

// Decode implements codec.Codec.
func (c binaryCodec[T]) Decode(data []byte) (T, error) {
	m, err := c.make()
	if err != nil {
		return m, err
	}
	return m, proto.Unmarshal(data, m)
}

type jsonCodec[T proto.Message] struct{ make func() (T, error) }

// ContentType implements codec.Codec.
func (jsonCodec[T]) ContentType() string { return codec.ContentTypeJSON }

// Accepts implements codec.Accepter: the JSON media types codec.JSON
// accepts.
func (jsonCodec[T]) Accepts(mediaType string) bool {
	return codec.JSON[struct{}]().(codec.Accepter).Accepts(mediaType)
}

// Encode implements codec.Codec.
func (jsonCodec[T]) Encode(v T) ([]byte, error) { return protojson.Marshal(v) }

// Decode implements codec.Codec.
func (c jsonCodec[T]) Decode(data []byte) (T, error) {
	m, err := c.make()
	if err != nil {
		return m, err
	}
	return m, protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}
