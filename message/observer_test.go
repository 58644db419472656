package message

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestObserversCombine(t *testing.T) {
	var got []string
	rec := func(name string) Observer {
		return ObserverFunc(func(_ context.Context, ev Event) { got = append(got, name+":"+ev.Kind.String()) })
	}
	if Observers() != nil || Observers(nil, nil) != nil {
		t.Fatal("Observers of nothing is not nil")
	}
	one := rec("a")
	if o := Observers(nil, one); o == nil {
		t.Fatal("Observers(nil, a) is nil")
	}
	o := Observers(rec("a"), nil, Observers(rec("b"), rec("c")))
	o.Observe(context.Background(), Event{Kind: EventRetry})
	if strings.Join(got, ",") != "a:retry,b:retry,c:retry" {
		t.Fatalf("observed %v, want a, b, c in order", got)
	}
}

func TestEventKindNames(t *testing.T) {
	for k := EventPublished; k <= EventLag; k++ {
		if s := k.String(); s == "" || s == "unknown event" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if EventKind(0).String() != "unknown event" || EventKind(200).String() != "unknown event" {
		t.Error("an unknown kind has a name")
	}
}

func TestMessageEvent(t *testing.T) {
	m := &Message{ID: "id-1", Delivery: Delivery{System: "kafka", Topic: "orders", Group: "billing", Attempt: 2, Partition: 3}}
	ev := MessageEvent(EventHandlerError, m)
	if ev.System != "kafka" || ev.Topic != "orders" || ev.Group != "billing" || ev.Attempt != 2 || ev.Msg != m || ev.Partition != -1 {
		t.Fatalf("MessageEvent = %+v", ev)
	}
	if ev := MessageEvent(EventRetry, nil); ev.Msg != nil || ev.Partition != -1 {
		t.Fatalf("MessageEvent(nil) = %+v", ev)
	}
}

// TestLogEvents: the one log format: message, level and attribute names
// per event; nothing below the logger's level, nothing for unlogged kinds,
// handler errors at Debug unless LogHandlerErrorsAt says otherwise.
func TestLogEvents(t *testing.T) {
	if LogEvents(nil) != nil {
		t.Fatal("LogEvents(nil) is not nil")
	}
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	o := LogEvents(l)
	ctx := context.Background()
	m := &Message{ID: "id-1", Delivery: Delivery{System: "kafka", Topic: "orders", Group: "billing", Attempt: 1, Partition: 3, Offset: 42}}
	cases := []struct {
		ev   Event
		want string // "" means not logged
	}{
		{func() Event { e := MessageEvent(EventHandlerError, m); e.Err = errors.New("boom"); return e }(),
			`level=DEBUG msg="ferry: handler failed" system=kafka topic=orders group=billing partition=3 offset=42 id=id-1 attempt=1 err=boom`},
		{Event{Kind: EventConnectionLost, System: "rabbitmq", Partition: -1, Broker: "amqp://guest:xxxxx@h:5672/", Role: "subscriber", State: "disconnected", Err: errors.New("EOF")},
			`level=WARN msg="ferry: connection lost" system=rabbitmq broker=amqp://guest:xxxxx@h:5672/ role=subscriber state=disconnected err=EOF`},
		{Event{Kind: EventConnectionRestored, System: "rabbitmq", Partition: -1, Attempt: 2, State: "connected"},
			`level=INFO msg="ferry: connection restored" system=rabbitmq attempt=2 state=connected`},
		{Event{Kind: EventCommitFailed, System: "kafka", Topic: "orders", Group: "billing", Partition: 1, Err: errors.New("rebalance")},
			`level=WARN msg="ferry: commit failed" system=kafka topic=orders group=billing partition=1 err=rebalance`},
		{func() Event {
			e := MessageEvent(EventDeadLettered, m)
			e.DeadLetterTopic, e.Attempt, e.Err = "orders.DLT", 3, errors.New("boom")
			return e
		}(), `level=WARN msg="ferry: dead-lettered" system=kafka topic=orders group=billing partition=3 offset=42 id=id-1 attempt=3 dlt=orders.DLT err=boom`},
		{func() Event {
			e := MessageEvent(EventDeadLettered, m)
			e.DeadLetterTopic, e.Err, e.PublishErr = "orders.DLT", errors.New("boom"), errors.New("unroutable")
			return e
		}(), `level=ERROR msg="ferry: dead-lettered" system=kafka topic=orders group=billing partition=3 offset=42 id=id-1 attempt=1 dlt=orders.DLT err=boom publish_err=unroutable`},
		{func() Event { e := MessageEvent(EventDuplicateSkipped, m); e.DedupeKey = "k"; return e }(),
			`level=DEBUG msg="ferry: duplicate skipped" system=kafka topic=orders group=billing partition=3 offset=42 id=id-1 attempt=1 dedupe_key=k`},
		{MessageEvent(EventHandled, m), ""},
		{Event{Kind: EventLag, Lag: 5}, ""},
		{Event{Kind: EventPublished, Count: 2}, ""},
	}
	for _, c := range cases {
		buf.Reset()
		o.Observe(ctx, c.ev)
		if got := strings.TrimSpace(buf.String()); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.ev.Kind, got, c.want)
		}
	}

	buf.Reset()
	warn := LogEvents(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	warn.Observe(ctx, MessageEvent(EventHandlerError, m))
	if buf.Len() != 0 {
		t.Errorf("a Warn logger got a handler error at Debug: %s", buf.String())
	}
	LogEvents(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), nil, LogHandlerErrorsAt(slog.LevelWarn)).
		Observe(ctx, MessageEvent(EventHandlerError, m))
	if !strings.Contains(buf.String(), `level=WARN msg="ferry: handler failed"`) {
		t.Errorf("LogHandlerErrorsAt(Warn): %q", buf.String())
	}
}
