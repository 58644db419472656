package protocodec_test

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/codec/protocodec"
	"github.com/ferrymsg/ferry/message"
)

// Any generated message type is a payload type; here a well-known one.
func Example() {
	c := protocodec.New[*timestamppb.Timestamp]()
	b, _ := c.Encode(timestamppb.New(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)))
	m := &message.Message{Payload: b, Headers: map[string]string{codec.HeaderContentType: c.ContentType()}}

	ts, err := codec.Decode(c, m)
	fmt.Println(ts.AsTime(), err)
	fmt.Println(c.ContentType())
	// Output:
	// 2026-12-02 00:00:00 +0000 UTC <nil>
	// application/x-protobuf
}
