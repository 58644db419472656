package message_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

func TestBatchResults(t *testing.T) {
	boom := errors.New("boom")
	partial := &message.BatchError{}
	partial.Fail(1, boom)
	var nilErr message.BatchError
	nilErr.Fail(0, nil)
	outside := &message.BatchError{}
	outside.Fail(3, boom)
	for _, tc := range []struct {
		name string
		err  error
		want string // per message: . settled, x failed
	}{
		{"nil settles all", nil, "..."},
		{"a plain error fails all", boom, "xxx"},
		{"a BatchError fails the named", partial, ".x."},
		{"a wrapped BatchError too", fmt.Errorf("handler: %w", partial), ".x."},
		{"a failure without an error is a failure", nilErr.Err(), "x.."},
		{"an index outside the batch fails all", outside, "xxx"},
		{"a BatchError naming nothing fails all", &message.BatchError{}, "xxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := message.BatchResults(tc.err, 3)
			var got strings.Builder
			for i := range 3 {
				if errs != nil && errs[i] != nil {
					got.WriteByte('x')
				} else {
					got.WriteByte('.')
				}
			}
			if got.String() != tc.want {
				t.Fatalf("BatchResults = %s, want %s", got.String(), tc.want)
			}
		})
	}
	if !errors.Is(partial, boom) {
		t.Error("errors.Is does not see through a BatchError")
	}
	if (&message.BatchError{}).Err() != nil {
		t.Error("an empty BatchError's Err is not nil")
	}
	if s := partial.Error(); !strings.Contains(s, "#1: boom") {
		t.Errorf("Error() = %q, want the index and the error", s)
	}
}

func TestNewBatchConfig(t *testing.T) {
	c, err := message.NewBatchConfig(nil)
	if err != nil || c.MaxMessages != message.DefaultBatchMaxMessages || c.MaxBytes != message.DefaultBatchMaxBytes || c.MaxWait != message.DefaultBatchMaxWait {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	for _, o := range []message.BatchOption{message.WithBatchMaxMessages(0), message.WithBatchMaxBytes(0), message.WithBatchMaxWait(-1)} {
		if _, err := message.NewBatchConfig(o); !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithBatch") {
			t.Errorf("bad option: %v, want ErrInvalidConfig naming the option", err)
		}
	}
}
