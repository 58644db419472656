package adapter_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

func TestSubscriberConfigDefaultsAreValid(t *testing.T) {
	c := adapter.DefaultSubscriberConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var z adapter.SubscriberConfig
	z.Fill()
	if z != c {
		t.Fatalf("Fill of the zero value = %+v, want the defaults %+v", z, c)
	}
}

func TestSubscriberConfigFillKeepsSetValues(t *testing.T) {
	c := adapter.SubscriberConfig{Concurrency: 8, InitialBackoff: time.Minute}
	c.Fill()
	if c.Concurrency != 8 || c.InitialBackoff != time.Minute || c.MaxBackoff != time.Minute || c.Group != adapter.DefaultGroup {
		t.Fatalf("Fill = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSubscriberConfigValidateNamesEachProblem(t *testing.T) {
	c := adapter.SubscriberConfig{Concurrency: -1, MaxPending: 0, InitialBackoff: time.Second, MaxBackoff: time.Millisecond}
	err := c.Validate()
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"group name is empty", "concurrency -1", "max pending 0", "initial 1s, max 1ms", "drain timeout 0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
