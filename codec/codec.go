package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Codec turns values of T into payload bytes and back. Implementations
// must be safe for concurrent use: one Codec serves every handler call and
// publish.
type Codec[T any] interface {
	// ContentType is the MIME type of the payloads Encode makes, such as
	// "application/json". Publisher writes it into the message's content
	// type header; Decode checks a delivered message's header against it.
	ContentType() string
	// Encode returns the payload for v.
	Encode(v T) ([]byte, error)
	// Decode returns the value a payload holds. An error means the payload
	// is not a T: no redelivery will change that.
	Decode(data []byte) (T, error)
}

// Accepter is an optional interface of a Codec: Accepts reports whether
// the codec decodes payloads of mediaType (lower case, without
// parameters such as charset). A codec without it accepts exactly the
// media type of its ContentType. The JSON codecs accept any JSON media
// type (application/json, text/json, application/*+json).
type Accepter interface {
	Accepts(mediaType string) bool
}

// ContentTypeJSON is the content type of the JSON codecs, the one Spring's
// JSON converters write and require.
const ContentTypeJSON = "application/json"

// JSON returns the Codec of T in JSON, with encoding/json's rules
// (Marshal and Unmarshal: struct tags, unknown fields ignored, a payload
// with anything after the value rejected). Its content type is
// application/json.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

// StrictJSON is JSON that also rejects a payload with a field T does not
// have (json.Decoder.DisallowUnknownFields), for consumers that must not
// silently drop data a newer producer added.
func StrictJSON[T any]() Codec[T] { return jsonCodec[T]{strict: true} }

type jsonCodec[T any] struct{ strict bool }

// ContentType implements Codec.
func (jsonCodec[T]) ContentType() string { return ContentTypeJSON }

// Accepts implements Accepter.
func (jsonCodec[T]) Accepts(mediaType string) bool { return isJSON(mediaType) }

// Encode implements Codec.
func (jsonCodec[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }

// Decode implements Codec.
func (c jsonCodec[T]) Decode(data []byte) (T, error) {
	var v T
	if !c.strict {
		err := json.Unmarshal(data, &v)
		return v, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, fmt.Errorf("invalid data after the JSON value")
	}
	return v, nil
}

// isJSON reports whether mediaType is a JSON media type.
func isJSON(mediaType string) bool {
	return mediaType == ContentTypeJSON || mediaType == "text/json" ||
		strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json")
}
