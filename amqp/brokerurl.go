package amqp

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// validURLShape is what the errors about a bad broker URL show instead of
// the URL.
const validURLShape = "amqp://user:pass@host:5672/vhost (amqps:// for TLS; percent-encode the characters : / ? # @ %% and spaces " +
	"in the user name and password, as url.UserPassword does)"

// redactedPassword replaces passwords in what ferry shows.
const redactedPassword = "xxxxx"

// brokerURL is a checked broker URL: how it is shown and what must never
// be shown.
type brokerURL struct {
	// shown is the URL with its password redacted (and any part that
	// might hold a password).
	shown string
	// secrets are the strings scrubbed from every error text: the
	// password as written, decoded, and every candidate a malformed URL
	// could hold.
	secrets []string
	// timeout is the URL's connection_timeout parameter, 0 if none.
	timeout time.Duration
}

// checkBrokerURL validates raw as a broker URL. Its errors wrap
// message.ErrInvalidConfig and say what is wrong and what a valid URL
// looks like, but never show raw, any part of it, or an error that
// contains it (url.Parse's errors quote the whole URL): the password
// could be anywhere in a URL that does not parse.
func checkBrokerURL(raw string) (brokerURL, error) {
	secrets := urlSecrets(raw)
	bad := func(why string) (brokerURL, error) {
		return brokerURL{secrets: secrets}, fmt.Errorf("amqp: %w: the broker URL %s: want "+validURLShape, message.ErrInvalidConfig, why)
	}
	for _, r := range raw {
		switch {
		case r < 0x20 || r == 0x7f:
			return bad("contains a control character")
		case r == ' ' || r == '\u00a0':
			return bad("contains a space")
		}
	}
	if raw == "" {
		return bad("is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad(parseProblem(err))
	}
	if u.Scheme == "" || u.Opaque != "" || !strings.HasPrefix(strings.ToLower(raw), u.Scheme+"://") {
		return bad("does not start with a scheme, amqp:// or amqps://")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return bad("has a scheme other than amqp:// or amqps://")
	}
	if rest := raw[len(u.Scheme)+3:]; u.User == nil && strings.Contains(rest, "@") {
		return bad("has an '@' after its host (a '/', '?' or '#' in the password must be percent-encoded)")
	}
	b := brokerURL{shown: redactParsed(u, secrets), secrets: secrets}
	uri, err := amqp091.ParseURI(raw)
	if err != nil {
		return brokerURL{secrets: secrets}, fmt.Errorf("amqp: %w: the broker URL %s: %s; want "+validURLShape, message.ErrInvalidConfig, b.shown, scrubText(err.Error(), secrets))
	}
	b.timeout = time.Duration(uri.ConnectionTimeout) * time.Millisecond
	return b, nil
}

// parseProblem says what url.Parse found wrong, without quoting the URL.
func parseProblem(err error) string {
	var esc url.EscapeError
	var host url.InvalidHostError
	msg := err.Error()
	switch {
	case errors.As(err, &esc):
		return "has a bad percent-escape (a '%' not followed by two hex digits; write '%' itself as %25)"
	case errors.As(err, &host):
		return "has an invalid character in its host"
	case strings.Contains(msg, "missing protocol scheme"), strings.Contains(msg, "first path segment in URL cannot contain colon"):
		return "does not start with a scheme, amqp:// or amqps://"
	case strings.Contains(msg, "invalid port"):
		return "has an invalid port (or an unencoded ':', '/', '?', '#' or '@' in the password)"
	case strings.Contains(msg, "missing ']'"):
		return "has an unclosed '[' in its host"
	case strings.Contains(msg, "invalid userinfo"):
		return "has a character in its user name or password that must be percent-encoded"
	}
	return "is not a valid URL"
}

// redactParsed shows a parsed URL with its password redacted and any
// secret candidate scrubbed from the rest.
func redactParsed(u *url.URL, secrets []string) string {
	v := *u
	v.User = nil
	tail := strings.TrimPrefix(v.String(), u.Scheme+"://")
	tail = scrubText(tail, secrets)
	user := ""
	if u.User != nil {
		user = url.User(u.User.Username()).String()
		if _, ok := u.User.Password(); ok {
			user += ":" + redactedPassword
		}
		user += "@"
	}
	return u.Scheme + "://" + user + tail
}

// urlSecrets returns every string of raw that may be a password, however
// malformed raw is: the text between the last '@' and the user name (after
// the first and after the last ':'), as written and percent-decoded, and
// the password url.Parse finds.
func urlSecrets(raw string) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
		for _, dec := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if d, err := dec(s); err == nil && d != "" && !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		if i := strings.Index(userinfo, ":"); i >= 0 {
			add(userinfo[i+1:])
		}
		if i := strings.LastIndex(userinfo, ":"); i >= 0 {
			add(userinfo[i+1:])
		}
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
		}
	}
	// Longest first, so that a secret containing another is replaced
	// whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrubText replaces every secret in s.
func scrubText(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redactedPassword)
		}
	}
	return s
}
