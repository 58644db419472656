package codec_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

type order struct {
	ID    string   `json:"id"`
	Qty   int      `json:"qty"`
	Items []string `json:"items,omitempty"`
	Note  *string  `json:"note,omitempty"`
}

func TestJSONRoundTrip(t *testing.T) {
	note := "gift ✓"
	for _, c := range []codec.Codec[order]{codec.JSON[order](), codec.StrictJSON[order]()} {
		for _, v := range []order{{}, {ID: "o-1", Qty: 3, Items: []string{"a", "b"}, Note: &note}} {
			b, err := c.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Errorf("%T: round trip of %+v gave %+v", c, v, got)
			}
		}
		if c.ContentType() != "application/json" {
			t.Errorf("content type %q", c.ContentType())
		}
	}
	// Other shapes: a map, a slice, a scalar.
	m := map[string]int{"a": 1}
	b, _ := codec.JSON[map[string]int]().Encode(m)
	if got, err := codec.JSON[map[string]int]().Decode(b); err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("map round trip: %v %v", got, err)
	}
	if got, err := codec.JSON[string]().Decode([]byte(`"hello from Spring"`)); err != nil || got != "hello from Spring" {
		t.Errorf("string: %q %v", got, err)
	}
}

func TestJSONDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		c       codec.Codec[order]
		payload string
	}{
		{codec.JSON[order](), ``},
		{codec.JSON[order](), `{"id":`},
		{codec.JSON[order](), `{"id":"a"} trailing`},
		{codec.JSON[order](), `{"qty":"three"}`},
		{codec.JSON[order](), `"a string"`},
		{codec.StrictJSON[order](), `{"id":"a","extra":1}`},
		{codec.StrictJSON[order](), `{"id":"a"} {"id":"b"}`},
	} {
		if v, err := tc.c.Decode([]byte(tc.payload)); err == nil {
			t.Errorf("%T.Decode(%q) = %+v, want an error", tc.c, tc.payload, v)
		}
	}
	if _, err := codec.JSON[order]().Decode([]byte(`{"id":"a","extra":1}`)); err != nil {
		t.Errorf("JSON must ignore unknown fields: %v", err)
	}
}

func TestDecodeChecksContentType(t *testing.T) {
	c := codec.JSON[order]()
	payload := []byte(`{"id":"o-1","qty":1}`)
	for _, tc := range []struct {
		headers map[string]string
		ok      bool
	}{
		{nil, true},
		{map[string]string{codec.HeaderContentType: "application/json"}, true},
		{map[string]string{codec.HeaderContentType: "Application/JSON; charset=UTF-8"}, true},
		{map[string]string{codec.HeaderContentType: `"application/json"`}, true},
		{map[string]string{codec.HeaderContentType: "application/vnd.order+json"}, true},
		{map[string]string{codec.HeaderAMQPContentType: "application/json"}, true},
		{map[string]string{codec.HeaderAMQPContentType: "text/json"}, true},
		{map[string]string{codec.HeaderContentType: "application/x-protobuf"}, false},
		{map[string]string{codec.HeaderAMQPContentType: "text/plain"}, false},
		{map[string]string{codec.HeaderContentType: "json;;"}, false},
	} {
		m := &message.Message{ID: "m1", Payload: payload, Headers: tc.headers, Delivery: message.Delivery{Topic: "orders"}}
		v, err := codec.Decode(c, m)
		if tc.ok != (err == nil) {
			t.Errorf("headers %v: err %v, want ok=%v", tc.headers, err, tc.ok)
			continue
		}
		if err == nil && v.ID != "o-1" {
			t.Errorf("headers %v: decoded %+v", tc.headers, v)
		}
		var de *codec.DecodeError
		if err != nil && (!errors.As(err, &de) || de.ContentType == "" || de.ID != "m1" || de.Topic != "orders" || !retry.IsPermanent(err)) {
			t.Errorf("headers %v: %#v, want a permanent *DecodeError naming the message and content type", tc.headers, err)
		}
	}
}

// A codec without Accepter accepts exactly its own media type.
type textCodec struct{}

func (textCodec) ContentType() string             { return "text/plain; charset=utf-8" }
func (textCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (textCodec) Decode(b []byte) (string, error) { return string(b), nil }

func TestDecodeWithoutAccepter(t *testing.T) {
	ok := &message.Message{Payload: []byte("hi"), Headers: map[string]string{codec.HeaderContentType: "TEXT/plain"}}
	if v, err := codec.Decode[string](textCodec{}, ok); err != nil || v != "hi" {
		t.Errorf("text/plain: %q %v", v, err)
	}
	bad := &message.Message{Payload: []byte("hi"), Headers: map[string]string{codec.HeaderContentType: "text/html"}}
	if _, err := codec.Decode[string](textCodec{}, bad); err == nil {
		t.Error("text/html accepted by a text/plain codec")
	}
}

func TestDecodeErrorIsPermanentAndNamed(t *testing.T) {
	m := &message.Message{ID: "m-7", Payload: []byte("not json"), Delivery: message.Delivery{Topic: "orders"}}
	_, err := codec.Decode(codec.JSON[order](), m)
	var de *codec.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("%T %v, want *codec.DecodeError", err, err)
	}
	var pe *retry.PermanentError
	if !errors.As(err, &pe) || !retry.IsPermanent(err) || !errors.Is(pe.Err, err) {
		t.Errorf("DecodeError not seen as retry.PermanentError")
	}
	var other *message.PanicError // As must say no to other targets
	if errors.As(err, &other) {
		t.Error("DecodeError.As matched a *message.PanicError")
	}
	for _, want := range []string{`"m-7"`, `"orders"`, "application/json", "invalid character"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestHandlerDecodesAndCallsFn(t *testing.T) {
	var got order
	var gotMsg *message.Message
	h := codec.Handler(codec.JSON[order](), func(ctx context.Context, o order, m *message.Message) error {
		got, gotMsg = o, m
		return nil
	})
	out, err := inmem.Handle(context.Background(), h, "orders", &message.Message{ID: "x", Key: "k", Payload: []byte(`{"id":"o-9","qty":2}`)})
	if err != nil || !out.Settled || out.Attempts != 1 {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if got.ID != "o-9" || got.Qty != 2 || gotMsg == nil || gotMsg.ID != "x" || gotMsg.Key != "k" || gotMsg.Delivery.Topic != "orders" {
		t.Errorf("fn got %+v and %+v", got, gotMsg)
	}
}

func TestHandlerErrorsAreOrdinary(t *testing.T) {
	boom := errors.New("downstream down")
	calls := 0
	h := codec.Handler(codec.JSON[order](), func(ctx context.Context, o order, m *message.Message) error {
		calls++
		if calls < 3 {
			return boom
		}
		return nil
	})
	out, err := inmem.Handle(context.Background(), h, "orders", &message.Message{Payload: []byte(`{}`)})
	if err != nil || out.Attempts != 3 || !errors.Is(out.Errors[0], boom) || retry.IsPermanent(out.Errors[0]) {
		t.Errorf("outcome %+v, %v: fn's errors must be ordinary failures, redelivered", out, err)
	}
}

// The function's panic is a failure like any other: redelivered, not
// mistaken for a decode error.
func TestHandlerPanicIsRedelivered(t *testing.T) {
	calls := 0
	h := codec.Handler(codec.JSON[order](), func(ctx context.Context, o order, m *message.Message) error {
		calls++
		if m.Delivery.Attempt == 1 {
			panic("bug in the handler")
		}
		return nil
	})
	out, err := inmem.Handle(context.Background(), h, "orders", &message.Message{Payload: []byte(`{"id":"p"}`)})
	var pe *message.PanicError
	if err != nil || !out.Settled || out.Attempts != 2 || !errors.As(out.Errors[0], &pe) || retry.IsPermanent(out.Errors[0]) {
		t.Errorf("outcome %+v, %v: want a PanicError then a settled redelivery", out, err)
	}
}

func TestHandlerNilArguments(t *testing.T) {
	var nilCodec codec.Codec[order]
	for name, h := range map[string]message.Handler{
		"nil codec": codec.Handler(nilCodec, func(context.Context, order, *message.Message) error { return nil }),
		"nil fn":    codec.Handler[order](codec.JSON[order](), nil),
	} {
		out, err := inmem.Handle(context.Background(), h, "orders", &message.Message{Payload: []byte(`{}`)}, inmem.HandleMaxAttempts(2))
		if err == nil || out.Settled || !errors.Is(out.Errors[0], message.ErrInvalidConfig) || retry.IsPermanent(out.Errors[0]) {
			t.Errorf("%s: outcome %+v, %v; want ErrInvalidConfig, kept for redelivery", name, out, err)
		}
	}
	if _, err := codec.Decode(codec.JSON[order](), nil); !errors.Is(err, message.ErrInvalidMessage) {
		t.Errorf("Decode(nil message) = %v", err)
	}
}

// capture records what it is asked to publish.
type capture struct {
	msgs []*message.Message
}

func (c *capture) Publish(_ context.Context, _ string, msgs ...*message.Message) error {
	c.msgs = append(c.msgs, msgs...)
	return nil
}
func (c *capture) Close() error { return nil }

// amqpLike carries the content type in a header of its own.
type amqpLike struct{ capture }

func (*amqpLike) ContentTypeHeader() string { return codec.HeaderAMQPContentType }

func TestPublisherHeaders(t *testing.T) {
	ctx := context.Background()
	plain := &capture{}
	p, err := codec.NewPublisher(plain, codec.JSON[order](), codec.WithTypeID("com.example.Order"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, "orders", "cust-1", order{ID: "o-1", Qty: 1}); err != nil {
		t.Fatal(err)
	}
	m := plain.msgs[0]
	if m.Key != "cust-1" || string(m.Payload) != `{"id":"o-1","qty":1}` ||
		!reflect.DeepEqual(m.Headers, map[string]string{codec.HeaderContentType: "application/json", codec.HeaderTypeID: "com.example.Order"}) {
		t.Errorf("published %+v", m)
	}

	a := &amqpLike{}
	p2, err := codec.NewPublisher(a, codec.JSON[order](), codec.WithHeader(amqp.ContentEncodingHeader, "UTF-8"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Publish(ctx, "orders", "", order{}); err != nil {
		t.Fatal(err)
	}
	if h := a.msgs[0].Headers; !reflect.DeepEqual(h, map[string]string{codec.HeaderAMQPContentType: "application/json", amqp.ContentEncodingHeader: "UTF-8"}) {
		t.Errorf("AMQP-like publisher got headers %v", h)
	}

	p3, _ := codec.NewPublisher(a, codec.JSON[order](), codec.WithContentTypeHeader("content-type"))
	m3, err := p3.Message("k", order{ID: "z"})
	if err != nil || m3.Headers["content-type"] != "application/json" || len(m3.Headers) != 1 {
		t.Errorf("WithContentTypeHeader: %+v %v", m3, err)
	}
	// Each message has headers of its own.
	m3.Headers["x"] = "y"
	if m4, _ := p3.Message("k", order{}); m4.Headers["x"] != "" {
		t.Error("messages share their headers map")
	}
}

// The real AMQP publisher says where its content type goes.
func TestAMQPPublisherContentTypeHeader(t *testing.T) {
	var p message.Publisher = (*amqp.Publisher)(nil)
	h, ok := p.(codec.ContentTypeHeaderer)
	if !ok || h.ContentTypeHeader() != codec.HeaderAMQPContentType || amqp.ContentTypeHeader != codec.HeaderAMQPContentType {
		t.Fatalf("*amqp.Publisher: ContentTypeHeaderer %v, header %q; want %q", ok, amqp.ContentTypeHeader, codec.HeaderAMQPContentType)
	}
}

func TestNewPublisherBadInput(t *testing.T) {
	var nilPub *capture
	var nilCodec codec.Codec[order]
	for name, f := range map[string]func() error{
		"nil publisher":       func() error { _, err := codec.NewPublisher[order](nil, codec.JSON[order]()); return err },
		"typed-nil publisher": func() error { _, err := codec.NewPublisher[order](nilPub, codec.JSON[order]()); return err },
		"nil codec":           func() error { _, err := codec.NewPublisher(&capture{}, nilCodec); return err },
		"empty type id": func() error {
			_, err := codec.NewPublisher(&capture{}, codec.JSON[order](), codec.WithTypeID(""))
			return err
		},
		"empty header name": func() error {
			_, err := codec.NewPublisher(&capture{}, codec.JSON[order](), codec.WithHeader("", "v"))
			return err
		},
		"empty content type header": func() error {
			_, err := codec.NewPublisher(&capture{}, codec.JSON[order](), codec.WithContentTypeHeader(""))
			return err
		},
		"zero Publisher": func() error { return new(codec.Publisher[order]).Publish(context.Background(), "t", "", order{}) },
	} {
		if err := f(); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	var np *codec.Publisher[order]
	if _, err := np.Message("k", order{}); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("nil Publisher: %v", err)
	}
}

func TestPublishEncodeError(t *testing.T) {
	c := &capture{}
	p, _ := codec.NewPublisher(c, codec.JSON[chan int]())
	err := p.Publish(context.Background(), "t", "", make(chan int))
	if !errors.Is(err, message.ErrInvalidMessage) || !strings.Contains(err.Error(), "chan int") || len(c.msgs) != 0 {
		t.Errorf("unencodable value: %v, %d published", err, len(c.msgs))
	}
}

func TestNewMessage(t *testing.T) {
	m, err := codec.NewMessage(codec.JSON[order](), "k", order{ID: "o-1"})
	if err != nil || m.Key != "k" || string(m.Payload) != `{"id":"o-1","qty":0}` || m.Headers[codec.HeaderContentType] != "application/json" {
		t.Fatalf("%+v %v", m, err)
	}
	back, err := codec.Decode(codec.JSON[order](), m)
	if err != nil || back.ID != "o-1" {
		t.Errorf("decode of NewMessage's message: %+v %v", back, err)
	}
	var nilCodec codec.Codec[order]
	if _, err := codec.NewMessage(nilCodec, "", order{}); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("nil codec: %v", err)
	}
	if _, err := codec.NewMessage(codec.JSON[chan int](), "", make(chan int)); !errors.Is(err, message.ErrInvalidMessage) {
		t.Errorf("unencodable: %v", err)
	}
}
