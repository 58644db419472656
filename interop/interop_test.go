package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// wait bounds every wait for a delivery and every client run.
const wait = 60 * time.Second

var (
	clientsMu sync.Mutex
	clients   = map[string]string{}
)

// client returns what runs the named client of scripts/interop.sh
// (spring: a java classpath; pika: a python; kcat: a binary), preparing
// it when stale. It skips t when something only `interop.sh up` installs
// is missing, or fails it with FERRY_REQUIRE_BROKERS=1.
func client(t *testing.T, name string) string {
	t.Helper()
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if p, ok := clients[name]; ok {
		return p
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a first Maven build downloads its jars
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "interop.sh"), "path", name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr.String()), "interop: ERROR: "))
		if testenv.RequireBrokers() {
			t.Fatalf("%s; FERRY_REQUIRE_BROKERS=1, so this fails (`make test` runs it)", msg)
		}
		t.Skipf("%s; `make test` runs it", msg)
	}
	if err != nil {
		t.Fatalf("scripts/interop.sh path %s: %v\n%s", name, err, stderr.Bytes())
	}
	p := strings.TrimSpace(string(out))
	clients[name] = p
	return p
}

// run runs a client's command (what names it in the log), logs what it
// printed and returns the rest of its stdout lines that start with
// prefix + " ", or all of them when prefix is "".
func run(t *testing.T, what, prefix, bin string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %s in %v", what, exitText(err), time.Since(start).Round(time.Millisecond))
	var lines []string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		t.Logf("  %s", line)
		if prefix == "" {
			lines = append(lines, line)
		} else if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			lines = append(lines, rest)
		}
	}
	if stderr.Len() > 0 {
		t.Logf("  stderr: %s", strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		t.Fatalf("%s failed: %v (command: %s %s)", what, err, bin, strings.Join(args[max(0, len(args)-5):], " "))
	}
	return lines
}

func exitText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// decode unmarshals each line into a new T.
func decode[T any](t *testing.T, lines []string) []T {
	t.Helper()
	out := make([]T, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
	}
	return out
}

// name is a topic, exchange or queue name of its own for t.
func name(t *testing.T) string {
	return fmt.Sprintf("ferrytest.interop.%s.%08x", strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()), rand.Uint32())
}

// collector is a handler that keeps what it got.
type collector struct {
	mu   sync.Mutex
	msgs []*message.Message
	more chan struct{}
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) handle(_ context.Context, m *message.Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
	return nil
}

// waitN waits for n messages and returns them in the order handled.
func (c *collector) waitN(t *testing.T, n int) []*message.Message {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		got := append([]*message.Message(nil), c.msgs...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("got %d messages after %v, want %d", len(got), wait, n)
		}
	}
}

// subscribe runs sub.Subscribe(topic) until the test ends, and checks
// that it returned nil.
func subscribe(t *testing.T, sub message.Subscriber, topic string, h message.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Subscribe(ctx, topic, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe returned %v, want nil", err)
			}
		case <-time.After(wait):
			t.Errorf("Subscribe did not return after its context ended")
		}
	})
}

// byHeader indexes msgs by the value of header k; each value once.
func byHeader(t *testing.T, msgs []*message.Message, k string) map[string]*message.Message {
	t.Helper()
	out := make(map[string]*message.Message, len(msgs))
	for _, m := range msgs {
		v := m.Headers[k]
		if out[v] != nil {
			t.Fatalf("two messages with %s %q", k, v)
		}
		out[v] = m
	}
	return out
}
