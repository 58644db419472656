package amqp_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/typecheck"
	"github.com/ferrymsg/ferry/message"
)

// optionSides is the table of every option and the constructors that take
// it; TestOptionSides proves it against the compiler. The topology options
// are shared because Publisher.Declare declares what a Subscriber does.
var optionSides = []struct {
	expr     string
	pub, sub bool
}{
	{`amqp.WithOptions(amqp.WithQuorumQueues(), amqp.WithShards(4))`, true, true},
	{`amqp.WithConfig(amqp091.Config{})`, true, true},
	{`amqp.WithExchangeKind(amqp.ExchangeFanout)`, true, true},
	{`amqp.WithBindingKey("order.*")`, true, true},
	{`amqp.WithQueueName(func(topic, group string) string { return group })`, true, true},
	{`amqp.WithQuorumQueues()`, true, true},
	{`amqp.WithQueueArgs(amqp091.Table{"x-max-length": int64(1)})`, true, true},
	{`amqp.WithDeadLetterExchange("dlx")`, true, true},
	{`amqp.WithKeyHeader("k")`, true, true},
	{`amqp.WithReconnectBackoff(time.Millisecond, time.Second)`, true, true},
	{`amqp.WithDialTimeout(time.Second)`, true, true},
	{`amqp.WithAddresses("amqp://127.0.0.1:5673/")`, true, true},
	{`amqp.WithLogger(slog.Default())`, true, true},
	{`amqp.WithOnStateChange(func(amqp.StateChange) {})`, true, true},
	{`amqp.WithShards(4)`, true, true},
	{`amqp.WithCompetingConsumers()`, true, true},
	{`amqp.WithRoutingKey(func(string, *message.Message) string { return "" })`, true, false},
	{`amqp.WithMaxPayload(1 << 20)`, true, false},
	{`amqp.WithPublishChannels(2)`, true, false},
	{`amqp.WithGroup("x")`, false, true},
	{`amqp.WithConcurrency(2)`, false, true},
	{`amqp.WithPrefetch(10)`, false, true},
	{`amqp.WithRedeliveryBackoff(time.Millisecond, time.Second)`, false, true},
	{`amqp.WithDrainTimeout(time.Second)`, false, true},
	{`amqp.WithGroupHeartbeat(time.Second)`, false, true},
}

// TestOptionSides type-checks a program that gives every option to both
// constructors: exactly the calls of an option to the side that does not
// take it fail, each with an error naming the option type it lacks. So
// amqp.NewPublisher(url, amqp.WithGroup("x")) does not compile.
func TestOptionSides(t *testing.T) {
	var src strings.Builder
	src.WriteString("package main\n\nimport (\n\t\"log/slog\"\n\t\"time\"\n\n\tamqp091 \"github.com/rabbitmq/amqp091-go\"\n\n\t\"github.com/ferrymsg/ferry/amqp\"\n\t\"github.com/ferrymsg/ferry/message\"\n)\n\n")
	src.WriteString("var (\n\t_ = slog.Default\n\t_ = time.Second\n\t_ amqp091.Table\n\t_ *message.Message\n)\n\nfunc main() {\n")
	line := strings.Count(src.String(), "\n") + 1
	want := map[int]string{}
	for _, o := range optionSides {
		fmt.Fprintf(&src, "\t_, _ = amqp.NewPublisher(\"\", %s)\n", o.expr)
		if !o.pub {
			want[line] = "amqp.PublisherOption"
		}
		fmt.Fprintf(&src, "\t_, _ = amqp.NewSubscriber(\"\", %s)\n", o.expr)
		if !o.sub {
			want[line+1] = "amqp.SubscriberOption"
		}
		line += 2
	}
	src.WriteString("}\n")
	errs := typecheck.Check(t, src.String())
	got := map[int]bool{}
	for _, e := range errs {
		got[e.Line] = true
		if w, ok := want[e.Line]; !ok {
			t.Errorf("unexpected error: %v", e)
		} else if !strings.Contains(e.Msg, w) || !strings.Contains(e.Msg, "amqp.With") {
			t.Errorf("error %v does not name the option and %s", e, w)
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

// unreachable is a broker URL nothing listens on: every case below must
// fail on its option before the constructor dials.
const unreachable = "amqp://127.0.0.1:1/"

func TestOptionsRejectBadValues(t *testing.T) {
	shared := map[string]amqp.Option{
		"WithConfig: amqp091.Config.Recovery":    amqp.WithConfig(amqp091.Config{Recovery: &amqp091.Recovery{}}),
		"WithConfig: amqp091.Config.Heartbeat":   amqp.WithConfig(amqp091.Config{Heartbeat: -time.Second}),
		"WithConfig: amqp091.Config.FrameSize":   amqp.WithConfig(amqp091.Config{FrameSize: -1}),
		`WithExchangeKind("headers")`:            amqp.WithExchangeKind("headers"),
		`WithBindingKey("xxx`:                    amqp.WithBindingKey(strings.Repeat("x", 256)),
		"WithQueueName(nil)":                     amqp.WithQueueName(nil),
		"WithQueueArgs:":                         amqp.WithQueueArgs(amqp091.Table{"x": struct{}{}}),
		`WithDeadLetterExchange("")`:             amqp.WithDeadLetterExchange(""),
		`WithDeadLetterExchange("d", ["a" "b"])`: amqp.WithDeadLetterExchange("d", "a", "b"),
		`WithDeadLetterExchange("d", "xxx`:       amqp.WithDeadLetterExchange("d", strings.Repeat("x", 256)),
		`WithKeyHeader("")`:                      amqp.WithKeyHeader(""),
		`WithKeyHeader("amqp-type")`:             amqp.WithKeyHeader(amqp.TypeHeader),
		`WithKeyHeader("ferry-time")`:            amqp.WithKeyHeader(amqp.TimeHeader),
		`WithKeyHeader("ferry-shard-3")`:         amqp.WithKeyHeader(amqp.ShardHeader(3)),
		"WithReconnectBackoff(1s, 1ms)":          amqp.WithReconnectBackoff(time.Second, time.Millisecond),
		"WithReconnectBackoff(0s, 1s)":           amqp.WithReconnectBackoff(0, time.Second),
		"WithDialTimeout(0s)":                    amqp.WithDialTimeout(0),
		"WithDialTimeout(-1s)":                   amqp.WithDialTimeout(-time.Second),
		"WithShards(0)":                          amqp.WithShards(0),
		"WithShards(65)":                         amqp.WithShards(amqp.ShardBuckets + 1),
		"WithShards(0) in WithOptions":           amqp.WithOptions(amqp.WithQuorumQueues(), amqp.WithShards(0)),
	}
	pub := map[string]amqp.PublisherOption{
		"WithRoutingKey(nil)":          amqp.WithRoutingKey(nil),
		"WithMaxPayload(0)":            amqp.WithMaxPayload(0),
		"WithMaxPayload(536870913)":    amqp.WithMaxPayload(512<<20 + 1),
		"WithPublishChannels(0)":       amqp.WithPublishChannels(0),
		"WithPublishChannels(65)":      amqp.WithPublishChannels(65),
		"WithShards(-1) (shared)":      amqp.WithShards(-1),
		"WithKeyHeader(\"\") (shared)": amqp.WithKeyHeader(""),
	}
	sub := map[string]amqp.SubscriberOption{
		`WithGroup("")`:                  amqp.WithGroup(""),
		"WithConcurrency(0)":             amqp.WithConcurrency(0),
		"WithConcurrency(65536)":         amqp.WithConcurrency(65536),
		"WithPrefetch(0)":                amqp.WithPrefetch(0),
		"WithPrefetch(70000)":            amqp.WithPrefetch(70000),
		"WithRedeliveryBackoff(1s, 1ms)": amqp.WithRedeliveryBackoff(time.Second, time.Millisecond),
		"WithRedeliveryBackoff(-1s, 1s)": amqp.WithRedeliveryBackoff(-time.Second, time.Second),
		"WithDrainTimeout(0s)":           amqp.WithDrainTimeout(0),
		"WithGroupHeartbeat(1ms)":        amqp.WithGroupHeartbeat(time.Millisecond),
		"WithGroupHeartbeat(1h0m0s)":     amqp.WithGroupHeartbeat(time.Hour),
	}
	for name, o := range shared {
		t.Run("publisher "+name, func(t *testing.T) {
			_, err := amqp.NewPublisher(unreachable, o)
			checkInvalid(t, err, mention(name))
		})
		t.Run("subscriber "+name, func(t *testing.T) {
			_, err := amqp.NewSubscriber(unreachable, o)
			checkInvalid(t, err, mention(name))
		})
	}
	for name, o := range pub {
		t.Run("publisher "+name, func(t *testing.T) {
			_, err := amqp.NewPublisher(unreachable, o)
			checkInvalid(t, err, mention(name))
		})
	}
	for name, o := range sub {
		t.Run("subscriber "+name, func(t *testing.T) {
			_, err := amqp.NewSubscriber(unreachable, o)
			checkInvalid(t, err, mention(name))
		})
	}
	t.Run("the error text", func(t *testing.T) {
		_, err := amqp.NewSubscriber(unreachable, amqp.WithPrefetch(0))
		if want := "amqp: ferry: invalid configuration: WithPrefetch(0): want 1..65535"; err == nil || err.Error() != want {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}

// mention is the part of a case name the error must contain: up to the
// first space (the option as called), or the whole name.
func mention(name string) string {
	name, _, _ = strings.Cut(name, " (")
	name, _, _ = strings.Cut(name, " in ")
	return name
}

func checkInvalid(t *testing.T, err error, mention string) {
	t.Helper()
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	if !strings.HasPrefix(err.Error(), "amqp: ") || !strings.Contains(err.Error(), mention) {
		t.Errorf("err %q does not start with \"amqp: \" and name %q", err, mention)
	}
}

// TestNilOptionsAreSkipped: a nil option is skipped, so the constructor
// gets as far as dialing (and fails there, nothing listens).
func TestNilOptionsAreSkipped(t *testing.T) {
	if _, err := amqp.NewPublisher(unreachable, nil, amqp.WithOptions(nil)); err == nil || errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("NewPublisher with nil options: %v, want a dial error", err)
	}
	if _, err := amqp.NewSubscriber(unreachable, nil, amqp.WithOptions(nil)); err == nil || errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("NewSubscriber with nil options: %v, want a dial error", err)
	}
}
