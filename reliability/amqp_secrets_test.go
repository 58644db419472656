package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/amqp"
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
