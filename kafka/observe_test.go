package kafka_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// events records observed events.
type events struct {
	mu  sync.Mutex
	evs []message.Event
}

func (e *events) Observe(_ context.Context, ev message.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) count(k message.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// TestObserverConnectionEvents: a broker that cannot be reached is a
// connection lost event (Warn in the log) for each failed dial, and the
// first dial that succeeds again a connection restored one (Info).
func TestObserverConnectionEvents(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there until the cluster starts below
	var obs events
	var logs logBuffer
	p := newPublisher(t, []string{"127.0.0.1:" + strconv.Itoa(port)}, kafka.WithObserver(&obs),
		kafka.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	err = p.Publish(short, "conn", &message.Message{Key: "k"})
	cancel()
	if err == nil {
		t.Fatal("Publish succeeded with no broker")
	}
	testenv.WaitFor(t, 10*time.Second, "a connection lost event", func() bool { return obs.count(message.EventConnectionLost) > 0 })
	if obs.count(message.EventPublishFailed) != 1 || obs.count(message.EventConnectionRestored) != 0 {
		t.Errorf("events with the broker down: %+v", obs.evs)
	}

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatalf("kfake on port %d: %v", port, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := p.Publish(ctx, "conn", &message.Message{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "a connection restored event", func() bool { return obs.count(message.EventConnectionRestored) > 0 })
	if obs.count(message.EventPublished) != 1 {
		t.Errorf("%d published events, want 1", obs.count(message.EventPublished))
	}
	out := logs.String()
	for _, want := range []string{`level=WARN msg="ferry: connection lost" system=kafka`, `level=INFO msg="ferry: connection restored" system=kafka`,
		"role=publisher", "state=unreachable", "broker=127.0.0.1:" + strconv.Itoa(port)} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%.2000s", want, out)
		}
	}
}
