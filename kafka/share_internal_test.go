package kafka

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/retry"
)

// TestSharePermanent: what a share group rejects instead of releasing.
func TestSharePermanent(t *testing.T) {
	base := errors.New("bad")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"plain error", base, false},
		{"retry.Permanent", retry.Permanent(base), true},
		{"wrapped retry.Permanent", fmt.Errorf("handler: %w", retry.Permanent(base)), true},
		{"backoff.Permanent", backoff.Permanent(base), true},
		{"codec decode error", fmt.Errorf("typed: %w", &codec.DecodeError{Topic: "t", ID: "x", Want: "application/json", Err: base}), true},
	} {
		if got := permanent(tc.err); got != tc.want {
			t.Errorf("%s: permanent = %v, want %v", tc.name, got, tc.want)
		}
	}
}
