package reliability_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// urlSecret is the password of the malformed URLs below; urlSecretEnc is
// it percent-encoded.
const (
	urlSecret    = "Zq9-SeCrEt-Pw"
	urlSecretEnc = "%5Aq9-SeCrEt-Pw"
)

// malformedURLs are broker URLs of every shape a user can get wrong, each
// holding urlSecret (or its encoding): none may let it reach an error, a
// log line or a state change. None of them names a reachable broker.
var malformedURLs = []string{
	"amqp://user:" + urlSecret + "@host:notaport/",
	"amqp://user:" + urlSecret + "@127.0.0.1:99999999999/",
	"amqp://user:" + urlSecret + "@127.0.0.1:5672:5673/",
	"amqp://user:" + urlSecret + "@ho st:5672/",
	"amqp://user:" + urlSecret + " @127.0.0.1:1/",
	"amqp://user:" + urlSecret + "%zz@127.0.0.1:1/",
	"amqp://us%zzer:" + urlSecret + "@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "%@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "\x7f@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "\x00@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "\n@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "\t@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "@@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "/x@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "#x@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "?x@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "@[::1/",
	"amqp://user:" + urlSecret + "@[::1]x:5672/",
	"amqp://user:12/" + urlSecret + "@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "@127.0.0.1:1/?heartbeat=abc",
	"amqp://user:" + urlSecret + "@127.0.0.1:1/?connection_timeout=x",
	"amqp://user:" + urlSecret + "@127.0.0.1:1/?channel_max=-1",
	"amqp://user:" + urlSecret + "@127.0.0.1:1/%zz",
	"amqp://user:" + urlSecretEnc + "@host:notaport/",
	"amqp://user:" + urlSecretEnc + "@127.0.0.1:1/",
	"amqp://:" + urlSecret + "@127.0.0.1:1/",
	"amqp://user:" + urlSecret,
	"amqp:/user:" + urlSecret + "@127.0.0.1:1/",
	"amqp:user:" + urlSecret + "@127.0.0.1:1",
	"amqps:user:" + urlSecret + "@127.0.0.1:1",
	"//user:" + urlSecret + "@127.0.0.1:1/",
	"user:" + urlSecret + "@127.0.0.1:5672",
	"user:" + urlSecret + "@host",
	"user:" + urlSecret,
	urlSecret,
	"http://user:" + urlSecret + "@127.0.0.1:1/",
	"AMQP://user:" + urlSecret + "@127.0.0.1:1/",
	"amqpx://user:" + urlSecret + "@127.0.0.1:1/",
	" amqp://user:" + urlSecret + "@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "@127.0.0.1:1/ ",
	"\tamqp://user:" + urlSecret + "@127.0.0.1:1/",
	"amqp://user:" + urlSecret + "@127.0.0.1:1/\x01",
	"amqp://user:" + urlSecret + "@\xff\xfe:1/",
	"amqp://user:" + urlSecret + "\xff@127.0.0.1:1/",
}

// secretIn reports where s shows the secret (plain or encoded).
func secretIn(s string) bool {
	return strings.Contains(s, urlSecret) || strings.Contains(s, urlSecretEnc) ||
		strings.Contains(strings.ToLower(s), strings.ToLower(urlSecretEnc))
}

// errorTexts returns the text of err and of every error it wraps, and the
// URL of any *url.Error in the chain.
func errorTexts(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		out = append(out, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
		if ue, ok := e.(*url.Error); ok {
			out = append(out, ue.URL)
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

// TestAMQPMalformedURLsNeverShowThePassword builds Publishers and
// Subscribers from malformed URLs holding a known password: each must fail
// with message.ErrInvalidConfig or a dial error, and the password must not
// appear in the error (nor in any error it wraps), the log or a state
// change.
func TestAMQPMalformedURLsNeverShowThePassword(t *testing.T) {
	for i, raw := range malformedURLs {
		for _, role := range []string{"publisher", "subscriber"} {
			t.Run(fmt.Sprintf("%d-%s", i, role), func(t *testing.T) {
				var logs bytes.Buffer
				var mu sync.Mutex
				var states []amqp.StateChange
				opts := amqp.WithOptions(
					amqp.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
					amqp.WithOnStateChange(func(sc amqp.StateChange) { mu.Lock(); states = append(states, sc); mu.Unlock() }),
					amqp.WithReconnectBackoff(1e6, 1e7),
				)
				var err error
				if role == "publisher" {
					var p *amqp.Publisher
					if p, err = amqp.NewPublisher(raw, opts); err == nil {
						p.Close()
					}
				} else {
					var s *amqp.Subscriber
					if s, err = amqp.NewSubscriber(raw, opts); err == nil {
						s.Close()
					}
				}
				if err == nil {
					t.Fatalf("%s from %q succeeded", role, raw)
				}
				for _, txt := range errorTexts(err) {
					if secretIn(txt) {
						t.Errorf("the error shows the password: %q (URL %q)", txt, raw)
						break
					}
				}
				if secretIn(logs.String()) {
					t.Errorf("the log shows the password: %s", logs.String())
				}
				mu.Lock()
				for _, sc := range states {
					if secretIn(sc.URL) || sc.Err != nil && secretIn(sc.Err.Error()) {
						t.Errorf("a state change shows the password: %+v", sc)
					}
				}
				mu.Unlock()
				if testing.Verbose() {
					t.Logf("%q: %v", raw, err)
				}
			})
		}
	}
}

// TestAMQPURLWithoutSchemeSaysWhatIsWrong: "127.0.0.1:5672" is a common
// mistake; the error must say the scheme is missing and show what a
// valid URL looks like.
func TestAMQPURLWithoutSchemeSaysWhatIsWrong(t *testing.T) {
	for _, raw := range []string{"127.0.0.1:5672", "localhost:5672", "localhost", "guest:guest@localhost:5672/"} {
		_, err := amqp.NewPublisher(raw)
		if err == nil {
			t.Fatalf("NewPublisher(%q) succeeded", raw)
		}
		msg := err.Error()
		if !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewPublisher(%q) = %v, want ErrInvalidConfig", raw, err)
		}
		if !strings.Contains(msg, "scheme") || !strings.Contains(msg, "amqp://user:pass@host:5672/vhost") {
			t.Errorf("NewPublisher(%q) = %q: want it to say the scheme is missing and show amqp://user:pass@host:5672/vhost", raw, msg)
		}
		t.Logf("%q: %v", raw, err)
	}
}

// TestAMQPPasswordNotInLogsOrStates runs a Publisher and a Subscriber
// whose URLs hold urlSecret (plain and percent-encoded; the broker is
// logged into with WithConfig's SASL credentials, so the URL's password
// is never checked) through a proxy that cuts their connections and then
// refuses new ones for a while: the disconnections, the failed
// reconnection attempts and the reconnections are logged and reported,
// and none of them, nor any error of the outage, shows the password.
func TestAMQPPasswordNotInLogsOrStates(t *testing.T) {
	raw := testenv.NeedAMQP(t)
	u := amqpTarget(t, raw)
	px := testenv.NewProxy(t, u.Host)
	guest := amqp091.Config{SASL: []amqp091.Authentication{&amqp091.PlainAuth{Username: "guest", Password: "guest"}}}
	for _, pw := range []string{urlSecret, urlSecretEnc} {
		t.Run(pw, func(t *testing.T) {
			secretURL := "amqp://guest:" + pw + "@" + px.Addr() + "/"
			var logs syncLog
			var mu sync.Mutex
			var states []amqp.StateChange
			opts := amqp.WithOptions(amqp.WithConfig(guest), fastReconnect,
				amqp.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
				amqp.WithOnStateChange(func(sc amqp.StateChange) { mu.Lock(); states = append(states, sc); mu.Unlock() }))
			p, err := amqp.NewPublisher(secretURL, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			s, err := amqp.NewSubscriber(secretURL, opts, amqp.WithGroup("g"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			count := func(st amqp.State) int {
				mu.Lock()
				defer mu.Unlock()
				n := 0
				for _, sc := range states {
					if sc.State == st {
						n++
					}
				}
				return n
			}
			waitFor := func(st amqp.State, n int) {
				deadline := time.Now().Add(30 * time.Second)
				for count(st) < n {
					if time.Now().After(deadline) {
						t.Fatalf("%d %v state changes, want %d", count(st), st, n)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			px.Down()
			waitFor(amqp.StateDisconnected, 2)
			waitFor(amqp.StateReconnecting, 2)
			// An outage's errors: a Publish bounded by a short ctx.
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			perr := p.Publish(ctx, "ferrytest.secrets", &message.Message{})
			cancel()
			px.Up()
			waitFor(amqp.StateConnected, 4)
			p.Close()
			s.Close()

			if secretIn(logs.String()) {
				t.Errorf("the log shows the password:\n%s", logs.String())
			}
			if perr != nil && secretIn(perr.Error()) {
				t.Errorf("Publish's error shows the password: %v", perr)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, sc := range states {
				if secretIn(sc.URL) || sc.Err != nil && secretIn(sc.Err.Error()) {
					t.Errorf("a state change shows the password: %+v", sc)
				}
				if !strings.Contains(sc.URL, "guest:xxxxx@") {
					t.Errorf("state change URL %q: want the password redacted as xxxxx", sc.URL)
				}
			}
			t.Logf("%d state changes, %d log bytes", len(states), len(logs.String()))
		})
	}
}

// syncLog is a log buffer safe for concurrent writers.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
