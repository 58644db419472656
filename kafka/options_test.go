package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/typecheck"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// optionSides is the table of every option and the constructors that take
// it; TestOptionSides proves it against the compiler.
var optionSides = []struct {
	expr     string
	pub, sub bool
}{
	{`kafka.WithClientOptions(kgo.ClientID("x"))`, true, true},
	{`kafka.WithTopicCreation(3, -1)`, true, true},
	{`kafka.WithoutTopicCreation()`, true, true},
	{`kafka.WithLogger(slog.Default())`, true, true},
	{`kafka.WithOptions(kafka.WithLogger(nil), kafka.WithoutTopicCreation())`, true, true},
	{`kafka.WithGroup("x")`, false, true},
	{`kafka.WithConcurrency(2)`, false, true},
	{`kafka.WithMaxPending(10)`, false, true},
	{`kafka.WithRedeliveryBackoff(time.Millisecond, time.Second)`, false, true},
	{`kafka.WithDrainTimeout(time.Second)`, false, true},
	{`kafka.WithStartOffset(kafka.StartLatest)`, false, true},
	{`kafka.WithCommitInterval(time.Second)`, false, true},
}

// TestOptionSides type-checks a program that gives every option to both
// constructors: exactly the calls of an option to the side that does not
// take it fail, each with an error naming the option type it lacks. So
// kafka.NewPublisher(brokers, kafka.WithGroup("x")) does not compile.
func TestOptionSides(t *testing.T) {
	var src strings.Builder
	src.WriteString("package main\n\nimport (\n\t\"log/slog\"\n\t\"time\"\n\n\t\"github.com/twmb/franz-go/pkg/kgo\"\n\n\t\"github.com/ferrymsg/ferry/kafka\"\n)\n\n")
	src.WriteString("var _, _, _ = slog.Default, time.Second, kgo.ClientID\n\nfunc main() {\n\tvar b []string\n")
	line := strings.Count(src.String(), "\n") + 1
	want := map[int]string{} // line -> the interface the option does not implement
	for _, o := range optionSides {
		fmt.Fprintf(&src, "\t_, _ = kafka.NewPublisher(b, %s)\n", o.expr)
		if !o.pub {
			want[line] = "kafka.PublisherOption"
		}
		fmt.Fprintf(&src, "\t_, _ = kafka.NewSubscriber(b, %s)\n", o.expr)
		if !o.sub {
			want[line+1] = "kafka.SubscriberOption"
		}
		line += 2
	}
	src.WriteString("}\n")
	errs := typecheck.Check(t, src.String())
	got := map[int]bool{}
	for _, e := range errs {
		got[e.Line] = true
		w, ok := want[e.Line]
		if !ok {
			t.Errorf("unexpected error: %v", e)
		} else if !strings.Contains(e.Msg, w) || !strings.Contains(e.Msg, "kafka.With") {
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

// TestSharedOptionList: a list of shared options configures both sides
// through WithOptions, and a Subscriber list mixes both kinds.
func TestSharedOptionList(t *testing.T) {
	src := `package main

import "github.com/ferrymsg/ferry/kafka"

func main() {
	shared := []kafka.Option{kafka.WithTopicCreation(3, -1), kafka.WithLogger(nil)}
	_, _ = kafka.NewPublisher(nil, kafka.WithOptions(shared...))
	_, _ = kafka.NewSubscriber(nil, kafka.WithOptions(shared...), kafka.WithGroup("g"))
	subOpts := []kafka.SubscriberOption{kafka.WithGroup("g"), shared[0]}
	_, _ = kafka.NewSubscriber(nil, subOpts...)
	_, _ = kafka.NewPublisher(nil, shared...)
}
`
	errs := typecheck.Check(t, src)
	if len(errs) != 1 || errs[0].Line != 11 {
		t.Fatalf("errors %v, want one on line 11 ([]Option spread into NewPublisher)\n%s", errs, typecheck.Numbered(src))
	}
}

func TestOptionsRejectBadValues(t *testing.T) {
	brokers := []string{"127.0.0.1:1"}
	sub := map[string]kafka.SubscriberOption{
		`WithConcurrency(0)`:                      kafka.WithConcurrency(0),
		`WithGroup("")`:                           kafka.WithGroup(""),
		`WithGroup("\xff")`:                       kafka.WithGroup("\xff"),
		`WithMaxPending(0)`:                       kafka.WithMaxPending(0),
		`WithRedeliveryBackoff(1s, 1ms)`:          kafka.WithRedeliveryBackoff(time.Second, time.Millisecond),
		`WithRedeliveryBackoff(0s, 1s)`:           kafka.WithRedeliveryBackoff(0, time.Second),
		`WithDrainTimeout(-1s)`:                   kafka.WithDrainTimeout(-time.Second),
		`WithStartOffset(7)`:                      kafka.WithStartOffset(7),
		`WithCommitInterval(0s)`:                  kafka.WithCommitInterval(0),
		`WithTopicCreation(0, 1)`:                 kafka.WithTopicCreation(0, 1),
		`WithTopicCreation(3, 0)`:                 kafka.WithTopicCreation(3, 0),
		`WithTopicCreation(3, -2)`:                kafka.WithTopicCreation(3, -2),
		`WithTopicCreation(-5, 1) in WithOptions`: kafka.WithOptions(kafka.WithTopicCreation(-5, 1)),
	}
	for name, o := range sub {
		t.Run("subscriber "+name, func(t *testing.T) {
			s, err := kafka.NewSubscriber(brokers, o)
			if s != nil {
				s.Close()
			}
			checkInvalid(t, err, strings.SplitN(name, "(", 2)[0]+"(")
		})
	}
	t.Run("subscriber WithMaxPending below WithConcurrency", func(t *testing.T) {
		_, err := kafka.NewSubscriber(brokers, kafka.WithMaxPending(2), kafka.WithConcurrency(4))
		checkInvalid(t, err, "WithMaxPending(2) is less than WithConcurrency(4)")
	})
	pub := map[string]kafka.PublisherOption{
		`WithTopicCreation(-1, 1)`: kafka.WithTopicCreation(-1, 1),
	}
	for name, o := range pub {
		t.Run("publisher "+name, func(t *testing.T) {
			p, err := kafka.NewPublisher(brokers, o)
			if p != nil {
				p.Close()
			}
			checkInvalid(t, err, strings.SplitN(name, "(", 2)[0]+"(")
		})
	}
	t.Run("client option franz-go rejects", func(t *testing.T) {
		_, err := kafka.NewSubscriber(brokers, kafka.WithClientOptions(kgo.ProducerBatchMaxBytes(1)))
		checkInvalid(t, err, "WithClientOptions")
		_, err = kafka.NewPublisher(brokers, kafka.WithClientOptions(kgo.ProducerBatchMaxBytes(1)))
		checkInvalid(t, err, "WithClientOptions")
	})
	t.Run("no seed brokers", func(t *testing.T) {
		_, err := kafka.NewPublisher(nil)
		checkInvalid(t, err, "no seed brokers")
		_, err = kafka.NewSubscriber(nil)
		checkInvalid(t, err, "no seed brokers")
	})
}

func checkInvalid(t *testing.T, err error, mention string) {
	t.Helper()
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	if !strings.HasPrefix(err.Error(), "kafka: ") || !strings.Contains(err.Error(), mention) {
		t.Errorf("err %q does not start with \"kafka: \" and name %q", err, mention)
	}
}

func TestOptionsAcceptGoodValuesAndNil(t *testing.T) {
	brokers := []string{"127.0.0.1:1"}
	p, err := kafka.NewPublisher(brokers, nil, kafka.WithTopicCreation(1, 1), kafka.WithoutTopicCreation(),
		kafka.WithClientOptions(nil, kgo.ClientID("t")), kafka.WithLogger(nil), kafka.WithOptions(nil, kafka.WithTopicCreation(2, -1)))
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	p.Close()
	s, err := kafka.NewSubscriber(brokers, nil, kafka.WithGroup("g"), kafka.WithConcurrency(4), kafka.WithMaxPending(4),
		kafka.WithRedeliveryBackoff(time.Millisecond, time.Millisecond), kafka.WithDrainTimeout(time.Millisecond),
		kafka.WithStartOffset(kafka.StartLatest), kafka.WithCommitInterval(time.Millisecond), kafka.WithOptions())
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	s.Close()
}

// logBuffer is an io.Writer for a slog handler, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWithLogger: franz-go's log reaches the slog logger at the levels it
// enables, and a Subscriber logs handler errors at Debug in the format of
// message.LogEvents.
func TestWithLogger(t *testing.T) {
	brokers := newFake(t)
	topic := uniqueTopic(t)
	var pubLog, subLog logBuffer
	debug := slog.New(slog.NewTextHandler(&pubLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newPublisher(t, brokers, kafka.WithLogger(debug))
	if err := p.Publish(context.Background(), topic, &message.Message{Key: "k", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if out := pubLog.String(); !strings.Contains(out, "client=franz-go") || !strings.Contains(out, "level=DEBUG") {
		t.Errorf("publisher log lacks franz-go's debug records:\n%.2000s", out)
	}

	subDebug := slog.New(slog.NewTextHandler(&subLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSubscriber(t, brokers, kafka.WithGroup("g-log"), kafka.WithLogger(subDebug),
		kafka.WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
	done := make(chan struct{})
	r := startSubscribe(t, s, topic, func(_ context.Context, m *message.Message) error {
		if m.Delivery.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		close(done)
		return nil
	})
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatal("message not redelivered")
	}
	r.stop(t)
	out := subLog.String()
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `msg="ferry: handler failed"`) {
			line = l
		}
	}
	for _, want := range []string{"level=DEBUG", "system=kafka", `err="first attempt fails"`, "attempt=1", "topic=" + topic, "group=g-log", "partition=", "offset="} {
		if !strings.Contains(line, want) {
			t.Errorf("handler failure record lacks %q: %q\nlog:\n%.3000s", want, line, out)
		}
	}
}
