package inmem_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/typecheck"
	"github.com/ferrymsg/ferry/message"
)

// TestOptionSides type-checks a program that gives every option to both
// NewBroker and NewSubscriber: exactly the calls to the wrong one fail,
// each naming the option type it lacks.
func TestOptionSides(t *testing.T) {
	options := []struct {
		expr   string
		broker bool
	}{
		{`inmem.WithPartitions(2)`, true},
		{`inmem.WithRetention(10, time.Minute)`, true},
		{`inmem.WithGroup("x")`, false},
		{`inmem.WithConcurrency(2)`, false},
		{`inmem.WithRedeliveryBackoff(time.Millisecond, time.Second)`, false},
		{`inmem.WithDrainTimeout(time.Second)`, false},
		{`inmem.WithMaxPending(10)`, false},
		{`inmem.WithLogger(slog.Default())`, false},
	}
	var src strings.Builder
	src.WriteString("package main\n\nimport (\n\t\"log/slog\"\n\t\"time\"\n\n\t\"github.com/ferrymsg/ferry/inmem\"\n)\n\n")
	src.WriteString("var _, _ = slog.Default, time.Second\n\nfunc main() {\n\tb, _ := inmem.NewBroker()\n")
	line := strings.Count(src.String(), "\n") + 1
	want := map[int]string{}
	for _, o := range options {
		fmt.Fprintf(&src, "\t_, _ = inmem.NewBroker(%s)\n", o.expr)
		fmt.Fprintf(&src, "\t_, _ = inmem.NewSubscriber(b, %s)\n", o.expr)
		if o.broker {
			want[line+1] = "inmem.SubscriberOption"
		} else {
			want[line] = "inmem.BrokerOption"
		}
		line += 2
	}
	src.WriteString("\t_, _ = inmem.NewPublisher(b, inmem.WithGroup(\"x\"))\n")
	want[line] = "inmem.PublisherOption"
	src.WriteString("\t_, _ = inmem.NewPublisher(b, inmem.WithObserver(nil))\n")
	src.WriteString("\t_, _ = inmem.NewSubscriber(b, inmem.WithObserver(nil))\n")
	src.WriteString("}\n")
	errs := typecheck.Check(t, src.String())
	got := map[int]bool{}
	for _, e := range errs {
		got[e.Line] = true
		if w, ok := want[e.Line]; !ok {
			t.Errorf("unexpected error: %v", e)
		} else if !strings.Contains(e.Msg, w) {
			t.Errorf("error %v does not mention %s", e, w)
		}
	}
	for l := range want {
		if !got[l] {
			t.Errorf("line %d compiles, want an error (%s)", l, want[l])
		}
	}
	if t.Failed() {
		t.Logf("program:\n%s", typecheck.Numbered(src.String()))
	}
}

func TestOptionsRejectBadValues(t *testing.T) {
	broker := map[string]inmem.BrokerOption{
		"WithPartitions(0)":        inmem.WithPartitions(0),
		"WithPartitions(-1)":       inmem.WithPartitions(-1),
		"WithPartitions(65537)":    inmem.WithPartitions(1<<16 + 1),
		"WithRetention(-1, 0s)":    inmem.WithRetention(-1, 0),
		"WithRetention(0, -1s)":    inmem.WithRetention(0, -time.Second),
		"WithRetention(-1, -1ns)":  inmem.WithRetention(-1, -1),
		"WithPartitions(1<<20)":    inmem.WithPartitions(1 << 20),
		"WithRetention(10, -1h0m)": inmem.WithRetention(10, -time.Hour),
	}
	for name, o := range broker {
		t.Run(name, func(t *testing.T) {
			b, err := inmem.NewBroker(o)
			if b != nil {
				t.Errorf("NewBroker returned a broker with the error %v", err)
			}
			checkInvalid(t, err, strings.SplitN(name, "(", 2)[0]+"(")
		})
	}
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sub := map[string]inmem.SubscriberOption{
		`WithGroup("")`:                  inmem.WithGroup(""),
		"WithConcurrency(0)":             inmem.WithConcurrency(0),
		"WithRedeliveryBackoff(1s, 1ms)": inmem.WithRedeliveryBackoff(time.Second, time.Millisecond),
		"WithRedeliveryBackoff(0s, 1s)":  inmem.WithRedeliveryBackoff(0, time.Second),
		"WithDrainTimeout(0s)":           inmem.WithDrainTimeout(0),
		"WithMaxPending(0)":              inmem.WithMaxPending(0),
	}
	for name, o := range sub {
		t.Run(name, func(t *testing.T) {
			_, err := inmem.NewSubscriber(b, o)
			checkInvalid(t, err, strings.SplitN(name, "(", 2)[0]+"(")
		})
	}
	t.Run("WithMaxPending below WithConcurrency", func(t *testing.T) {
		_, err := inmem.NewSubscriber(b, inmem.WithConcurrency(8), inmem.WithMaxPending(4))
		checkInvalid(t, err, "WithMaxPending(4) is less than WithConcurrency(8)")
	})
	t.Run("nil broker", func(t *testing.T) {
		_, err := inmem.NewSubscriber(nil)
		checkInvalid(t, err, "nil broker")
		_, err = inmem.NewPublisher(nil)
		checkInvalid(t, err, "nil broker")
	})
}

func checkInvalid(t *testing.T, err error, mention string) {
	t.Helper()
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	if !strings.HasPrefix(err.Error(), "inmem: ") || !strings.Contains(err.Error(), mention) {
		t.Errorf("err %q does not start with \"inmem: \" and name %q", err, mention)
	}
}

func TestOptionsAcceptGoodValuesAndNil(t *testing.T) {
	b, err := inmem.NewBroker(nil, inmem.WithPartitions(1), inmem.WithPartitions(1<<16), inmem.WithRetention(0, 0), inmem.WithRetention(5, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := inmem.NewSubscriber(b, nil, inmem.WithGroup("g"), inmem.WithConcurrency(4), inmem.WithMaxPending(4),
		inmem.WithRedeliveryBackoff(time.Millisecond, time.Millisecond), inmem.WithDrainTimeout(time.Millisecond), inmem.WithLogger(nil)); err != nil {
		t.Fatal(err)
	}
}
