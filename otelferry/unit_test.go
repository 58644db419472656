package otelferry_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
	"github.com/ferrymsg/ferry/retry"
)

func TestBadInput(t *testing.T) {
	var tp trace.TracerProvider
	var mp metric.MeterProvider
	var prop propagation.TextMapPropagator
	for name, opt := range map[string]otelferry.Option{
		"WithTracerProvider(nil)": otelferry.WithTracerProvider(tp),
		"WithMeterProvider(nil)":  otelferry.WithMeterProvider(mp),
		"WithPropagator(nil)":     otelferry.WithPropagator(prop),
	} {
		if _, err := otelferry.New(opt); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("New(%s) = %v, want ErrInvalidConfig", name, err)
		}
	}
	tel, err := otelferry.New(nil)
	if err != nil {
		t.Fatalf("New(nil option): %v", err)
	}
	var p message.Publisher
	if _, err := tel.Publisher(p); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("Publisher(nil) = %v, want ErrInvalidConfig", err)
	}
	if tel.Middleware()(nil) != nil {
		t.Error("Middleware()(nil) is not nil")
	}
	s := newSDK(t)
	h := s.tel.Middleware()(func(context.Context, *message.Message) error { return nil })
	if err := h(context.Background(), nil); err != nil {
		t.Errorf("a nil message: %v", err)
	}
	var nilCtx context.Context // a nil ctx must not panic
	tel.Observe(nilCtx, message.Event{Kind: message.EventRetry})
}

// TestBatchPublish: a batch gets a create span per message, its context in
// the message, and one send span that links to them.
func TestBatchPublish(t *testing.T) {
	b := inmemBroker(t)
	s := newSDK(t)
	pub, err := s.tel.Publisher(b.pub(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*message.Message{{Key: "a"}, {Key: "b"}, {Key: "c"}}
	if err := pub.Publish(context.Background(), "batch", msgs...); err != nil {
		t.Fatal(err)
	}
	var send *int
	creates := map[string]string{} // span id -> message id
	spans := s.spans.GetSpans()
	for i, sp := range spans {
		switch sp.Name {
		case "send batch":
			send = &i
		case "create batch":
			creates[sp.SpanContext.SpanID().String()] = attr(sp.Attributes, keyID)
		}
	}
	if send == nil || len(creates) != 3 {
		t.Fatalf("spans %v, want one send and three create spans", names(spans))
	}
	sp := spans[*send]
	if attr(sp.Attributes, "messaging.batch.message_count") != "3" || len(sp.Links) != 3 {
		t.Errorf("send span: batch count %q, %d links", attr(sp.Attributes, "messaging.batch.message_count"), len(sp.Links))
	}
	for _, m := range msgs {
		tp := m.Headers["traceparent"]
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || creates[parts[2]] != m.ID {
			t.Errorf("message %s carries %q, not its create span's context", m.ID, tp)
		}
	}
}

// TestDuplicateMarked: a skipped duplicate is marked in its process span
// and counted.
func TestDuplicateMarked(t *testing.T) {
	b := inmemBroker(t)
	s := newSDK(t)
	store, err := dedupe.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	dd, err := dedupe.New(store, dedupe.WithObserver(s.tel))
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 4)
	subscribe(t, b.sub(t, "dd", s.tel), "dup", message.Chain(func(context.Context, *message.Message) error {
		handled <- struct{}{}
		return nil
	}, s.tel.Middleware(), dd))
	pub, err := s.tel.Publisher(b.pub(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := pub.Publish(context.Background(), "dup", &message.Message{ID: "same", Key: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	<-handled
	var marked int
	waitFor(t, "the duplicate's span", func() bool {
		marked = 0
		for _, sp := range s.spans.GetSpans() {
			if sp.Name == "process dup" && attr(sp.Attributes, otelferry.AttrDuplicate) == "true" && len(sp.Events) == 1 &&
				sp.Events[0].Name == otelferry.EventDuplicateSkipped && attr(sp.Events[0].Attributes, otelferry.AttrDedupeKey) == "same" {
				marked++
			}
		}
		return marked > 0
	})
	if n := s.sum(t, otelferry.MetricDuplicates, "dup"); n != 1 {
		t.Errorf("%s = %d, want 1", otelferry.MetricDuplicates, n)
	}
	if len(handled) != 0 {
		t.Error("the duplicate reached the handler")
	}
}

// TestReplayLinksBack: a message replayed from the dead-letter topic is
// linked, when consumed again, to where it was first published.
func TestReplayLinksBack(t *testing.T) {
	b := inmemBroker(t)
	s := newSDK(t)
	pub, err := s.tel.Publisher(b.pub(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	mw, err := retry.New(retry.WithMaxAttempts(1), retry.WithDeadLetter(pub), retry.WithObserver(s.tel))
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	fail.Store(true)
	replayed := make(chan struct{}, 1)
	subscribe(t, b.sub(t, "svc", s.tel), "rp", message.Chain(func(context.Context, *message.Message) error {
		if fail.CompareAndSwap(true, false) {
			return errors.New("not yet")
		}
		replayed <- struct{}{}
		return nil
	}, s.tel.Middleware(), mw))
	m := &message.Message{Key: "k"}
	if err := pub.Publish(context.Background(), "rp", m); err != nil {
		t.Fatal(err)
	}
	send := s.waitSpan(t, "send rp", keyID, m.ID)
	s.waitSpan(t, "send rp.DLT", keyID, m.ID)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	stats, err := retry.Replay(ctx, b.sub(t, "replayer", nil), pub, "rp.DLT", retry.WithLimit(1))
	if err != nil || stats.Replayed != 1 {
		t.Fatalf("Replay: %+v, %v", stats, err)
	}
	select {
	case <-replayed:
	case <-time.After(testWait):
		t.Fatal("the replayed message was not handled")
	}
	var linked int
	waitFor(t, "the replayed message's process span", func() bool {
		linked = 0
		for _, sp := range s.spans.GetSpans() {
			if sp.Name == "process rp" && attr(sp.Attributes, keyID) == m.ID && sp.Status.Code != codes.Error &&
				len(sp.Links) == 1 && sp.Links[0].SpanContext.SpanID() == send.SpanContext.SpanID() {
				linked++
			}
		}
		return linked > 0
	})
}

// TestLogHandler: records logged in a span's context get its trace and
// span IDs; others do not.
func TestLogHandler(t *testing.T) {
	if otelferry.LogHandler(nil) != nil {
		t.Fatal("LogHandler(nil) is not nil")
	}
	var buf bytes.Buffer
	l := slog.New(otelferry.LogHandler(slog.NewTextHandler(&buf, nil))).With("svc", "billing")
	s := newSDK(t)
	ctx, span := s.tp.Tracer("t").Start(context.Background(), "op")
	l.InfoContext(ctx, "in span")
	span.End()
	l.InfoContext(context.Background(), "no span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	sc := span.SpanContext()
	if len(lines) != 2 || !strings.Contains(lines[0], "trace_id="+sc.TraceID().String()) ||
		!strings.Contains(lines[0], "span_id="+sc.SpanID().String()) || !strings.Contains(lines[0], "svc=billing") {
		t.Fatalf("log:\n%s", buf.String())
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("a record without a span got IDs: %s", lines[1])
	}

	// The retry middleware's records carry the process span's IDs.
	buf.Reset()
	b := inmemBroker(t)
	mw, err := retry.New(retry.WithMaxAttempts(2), retry.WithConstantBackoff(time.Millisecond),
		retry.WithLogger(slog.New(otelferry.LogHandler(slog.NewTextHandler(&syncWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})))),
		retry.WithDeadLetter(b.pub(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	subscribe(t, b.sub(t, "log", nil), "logs", message.Chain(func(_ context.Context, m *message.Message) error {
		if m.Delivery.Attempt == 1 {
			return errors.New("first fails")
		}
		close(done)
		return nil
	}, s.tel.Middleware(), mw))
	if err := b.pub(t, nil).Publish(context.Background(), "logs", &message.Message{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	<-done
	var sp string
	waitFor(t, "the retry record", func() bool {
		sp = syncRead(&buf)
		return strings.Contains(sp, `msg="ferry: retry"`)
	})
	if !strings.Contains(sp, "trace_id=") || !strings.Contains(sp, "span_id=") || !strings.Contains(sp, "system=inmem topic=logs group=log") {
		t.Errorf("retry record without the span's IDs: %s", sp)
	}
}

func names(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, sp := range spans {
		out[i] = sp.Name
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, testWait, what, cond)
}

// syncWriter is an io.Writer for a slog handler that a test reads.
type syncWriter struct{ w *bytes.Buffer }

var writeMu sync.Mutex

func (s *syncWriter) Write(p []byte) (int, error) {
	writeMu.Lock()
	defer writeMu.Unlock()
	return s.w.Write(p)
}

func syncRead(b *bytes.Buffer) string {
	writeMu.Lock()
	defer writeMu.Unlock()
	return b.String()
}
