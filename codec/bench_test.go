package codec_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/message"
)

var benchPayload = []byte(`{"id":"o-1001","qty":3,"items":["BOOK-GO","MUG-GOPHER","STICKER"]}`)

// BenchmarkHandler compares codec.Handler with the json.Unmarshal a
// handler would do itself (the baseline): the difference is the typed
// helper's cost per message.
func BenchmarkHandler(b *testing.B) {
	ctx := context.Background()
	m := &message.Message{ID: "m", Payload: benchPayload, Headers: map[string]string{codec.HeaderContentType: "application/json"}, Delivery: message.Delivery{Topic: "orders"}}
	var sink int
	b.Run("baseline json.Unmarshal", func(b *testing.B) {
		h := func(_ context.Context, m *message.Message) error {
			var o order
			if err := json.Unmarshal(m.Payload, &o); err != nil {
				return err
			}
			sink += o.Qty
			return nil
		}
		b.ReportAllocs()
		for b.Loop() {
			_ = h(ctx, m)
		}
	})
	b.Run("codec.Handler", func(b *testing.B) {
		h := codec.Handler(codec.JSON[order](), func(_ context.Context, o order, _ *message.Message) error {
			sink += o.Qty
			return nil
		})
		b.ReportAllocs()
		for b.Loop() {
			_ = h(ctx, m)
		}
	})
	_ = sink
}
