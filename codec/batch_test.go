package codec_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

func batch(payloads ...string) []*message.Message {
	var ms []*message.Message
	for i, p := range payloads {
		ms = append(ms, &message.Message{ID: fmt.Sprint("m", i), Key: "k", Payload: []byte(p), Delivery: message.Delivery{Topic: "orders"}})
	}
	return ms
}

func results(t *testing.T, err error, n int) []error {
	t.Helper()
	return message.BatchResults(err, n)
}

func TestBatchHandlerDecodesAndMapsFailures(t *testing.T) {
	msgs := batch(`{"id":"a"}`, `not json`, `{"id":"b"}`, `{"id":"c"}`)
	var got []string
	h := codec.BatchHandler(codec.JSON[order](), func(_ context.Context, vs []order, ms []*message.Message) error {
		var be message.BatchError
		for i, o := range vs {
			got = append(got, o.ID+"/"+ms[i].ID)
			if o.ID == "c" {
				be.Fail(i, errors.New("c failed"))
			}
		}
		return be.Err()
	})
	errs := results(t, h(context.Background(), msgs), len(msgs))
	if fmt.Sprint(got) != "[a/m0 b/m2 c/m3]" {
		t.Errorf("fn got %v, want the three that decode with their messages", got)
	}
	var de *codec.DecodeError
	if errs[0] != nil || errs[2] != nil || !errors.As(errs[1], &de) || !retry.IsPermanent(errs[1]) || errs[3] == nil || errs[3].Error() != "c failed" {
		t.Errorf("per-message results %v; want the decode error at 1 and c's at 3 (mapped back)", errs)
	}
}

func TestBatchHandlerPlainErrorFailsOnlyWhatFnGot(t *testing.T) {
	msgs := batch(`{"id":"a"}`, `[]`, `{"id":"b"}`)
	boom := errors.New("database down")
	h := codec.BatchHandler(codec.JSON[order](), func(context.Context, []order, []*message.Message) error { return boom })
	errs := results(t, h(context.Background(), msgs), len(msgs))
	if !errors.Is(errs[0], boom) || !errors.Is(errs[2], boom) || errors.Is(errs[1], boom) || !retry.IsPermanent(errs[1]) {
		t.Errorf("results %v; want boom for 0 and 2, the permanent decode error for 1", errs)
	}
	if err := codec.BatchHandler(codec.JSON[order](), func(context.Context, []order, []*message.Message) error { return nil })(context.Background(), batch(`{}`, `{}`)); err != nil {
		t.Errorf("all decoded and handled: %v", err)
	}
}

func TestBatchHandlerNoneDecodes(t *testing.T) {
	called := false
	h := codec.BatchHandler(codec.JSON[order](), func(context.Context, []order, []*message.Message) error { called = true; return nil })
	errs := results(t, h(context.Background(), batch(`x`, `y`)), 2)
	if called || !retry.IsPermanent(errs[0]) || !retry.IsPermanent(errs[1]) {
		t.Errorf("called %v, results %v", called, errs)
	}
	var nilCodec codec.Codec[order]
	if err := codec.BatchHandler(nilCodec, func(context.Context, []order, []*message.Message) error { return nil })(context.Background(), batch(`{}`)); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("nil codec: %v", err)
	}
}
