package protocodec_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/codec/protocodec"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

func roundTrip[T proto.Message](t *testing.T, c codec.Codec[T], v T) {
	t.Helper()
	b, err := c.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(b)
	if err != nil {
		t.Fatalf("Decode(%x): %v", b, err)
	}
	if !proto.Equal(got, v) {
		t.Errorf("%s round trip: %v, want %v", c.ContentType(), got, v)
	}
}

func TestRoundTrips(t *testing.T) {
	st, err := structpb.NewStruct(map[string]any{"id": "o-1", "qty": 3.0, "items": []any{"tea", "cake"}, "express": true, "note": nil})
	if err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.New(time.Date(2026, 12, 2, 1, 2, 3, 456789000, time.UTC))
	roundTrip(t, protocodec.New[*structpb.Struct](), st)
	roundTrip(t, protocodec.JSON[*structpb.Struct](), st)
	roundTrip(t, protocodec.New[*timestamppb.Timestamp](), ts)
	roundTrip(t, protocodec.JSON[*timestamppb.Timestamp](), ts)
	roundTrip(t, protocodec.New[*wrapperspb.StringValue](), wrapperspb.String("Zoë"))
	roundTrip(t, protocodec.New[*wrapperspb.StringValue](), &wrapperspb.StringValue{}) // the empty message: zero bytes

	if b, _ := protocodec.JSON[*timestamppb.Timestamp]().Encode(ts); string(b) != `"2026-12-02T01:02:03.456789Z"` {
		t.Errorf("protojson of a Timestamp: %s", b)
	}
	// Each Decode makes a message of its own.
	c := protocodec.New[*wrapperspb.StringValue]()
	a, _ := c.Decode([]byte("\x0a\x01a"))
	b, _ := c.Decode([]byte("\x0a\x01b"))
	if a == b || a.GetValue() != "a" || b.GetValue() != "b" {
		t.Errorf("decoded %v and %v", a, b)
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := protocodec.New[*timestamppb.Timestamp]().Decode([]byte("\xff\xff\xff")); err == nil {
		t.Error("binary: garbage decoded")
	}
	if _, err := protocodec.JSON[*timestamppb.Timestamp]().Decode([]byte(`{"seconds":`)); err == nil {
		t.Error("JSON: garbage decoded")
	}
	if v, err := protocodec.JSON[*structpb.Value]().Decode([]byte(`{"unknown":1}`)); err != nil || v.GetStructValue() == nil {
		t.Errorf("JSON into a Value: %v %v", v, err)
	}
	// An interface type has no message type to make: an error, not a panic.
	if _, err := protocodec.New[proto.Message]().Decode(nil); err == nil || !strings.Contains(err.Error(), "interface type") {
		t.Errorf("New[proto.Message]: %v", err)
	}
}

// Through the typed handler: a protobuf payload decodes, a JSON one is
// refused by its content type, as a permanent *codec.DecodeError.
func TestHandlerContentTypes(t *testing.T) {
	c := protocodec.New[*wrapperspb.StringValue]()
	var got []string
	h := codec.Handler(c, func(_ context.Context, v *wrapperspb.StringValue, _ *message.Message) error {
		got = append(got, v.GetValue())
		return nil
	})
	pb, _ := c.Encode(wrapperspb.String("hello"))
	for _, ct := range []string{"", protocodec.ContentType, "application/protobuf", "application/vnd.google.protobuf"} {
		m := &message.Message{Payload: pb, Headers: map[string]string{codec.HeaderContentType: ct}}
		if out, err := inmem.Handle(context.Background(), h, "t", m); err != nil || !out.Settled {
			t.Errorf("content type %q: %+v %v", ct, out, err)
		}
	}
	if len(got) != 4 || got[0] != "hello" {
		t.Errorf("handled %v", got)
	}
	m := &message.Message{Payload: []byte(`"hello"`), Headers: map[string]string{codec.HeaderContentType: "application/json"}}
	out, _ := inmem.Handle(context.Background(), h, "t", m, inmem.HandleMaxAttempts(1))
	var de *codec.DecodeError
	if out.Settled || !errors.As(out.Errors[0], &de) || !retry.IsPermanent(out.Errors[0]) {
		t.Errorf("a JSON payload on a protobuf handler: %+v", out)
	}
	pub := &capture{}
	p, err := codec.NewPublisher(pub, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), "t", "k", wrapperspb.String("x")); err != nil {
		t.Fatal(err)
	}
	if pub.msgs[0].Headers[codec.HeaderContentType] != protocodec.ContentType {
		t.Errorf("published headers %v", pub.msgs[0].Headers)
	}
}

type capture struct{ msgs []*message.Message }

func (c *capture) Publish(_ context.Context, _ string, msgs ...*message.Message) error {
	c.msgs = append(c.msgs, msgs...)
	return nil
}
func (c *capture) Close() error { return nil }

// Package codec, what JSON users import, does not pull in protobuf.
func TestCodecDoesNotImportProtobuf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ferrymsg/ferry/codec").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/ferrymsg/ferry/retry") {
		t.Fatalf("go list -deps output looks wrong:\n%s", out)
	}
	if strings.Contains(string(out), "google.golang.org/protobuf") {
		t.Errorf("package codec depends on google.golang.org/protobuf")
	}
}
