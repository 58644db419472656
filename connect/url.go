package connect

import (
	"net/url"
	"strings"
)

// redactedPassword replaces a password in everything this package shows.
const redactedPassword = "xxxxx"

// rawURL is a broker URL split into its parts, without url.Parse: a Kafka
// URL has several hosts, and url.Parse's errors quote the whole URL,
// password included.
type rawURL struct {
	scheme   string // lower case
	user     string // decoded
	password string // decoded
	hasUser  bool
	hasPass  bool
	userRaw  string // as written, for the adapter URL
	hosts    string // as written: "h1:9092,h2:9092"
	path     string // as written, with its leading '/', or ""
	query    url.Values
	shown    string // the URL with its password redacted
	secrets  []string
}

// splitURL splits s. Its errors never contain s or any part of the user
// info: only what is wrong and the scheme.
func splitURL(s string) (*rawURL, error) {
	r := &rawURL{}
	for _, c := range s {
		switch {
		case c < 0x20 || c == 0x7f:
			return nil, invalid("the broker URL contains a control character; want " + forms)
		case c == ' ' || c == '\u00a0':
			return nil, invalid("the broker URL contains a space; want " + forms)
		}
	}
	if s == "" {
		return nil, invalid("the broker URL is empty; want " + forms)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/?#@:") {
		return nil, &schemeError{"connect: the broker URL does not start with a scheme; want " + forms}
	}
	r.scheme = strings.ToLower(scheme)
	if strings.Contains(rest, "#") {
		return nil, invalid("the broker URL has a fragment ('#'; percent-encode it as %%23 in a password); want " + forms)
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		r.userRaw, rest = rest[:at], rest[at+1:]
		r.hasUser = true
		r.secrets = append(r.secrets, r.userRaw)
		if strings.ContainsAny(r.userRaw, "/?") {
			return nil, invalid("the broker URL has a '/' or '?' in its user info, or an '@' after its host (percent-encode / ? # @ : in the user name and password, as url.UserPassword does)")
		}
		u, p, hasPass := strings.Cut(r.userRaw, ":")
		r.secrets = append(r.secrets, p)
		du, err1 := url.PathUnescape(u)
		dp, err2 := url.PathUnescape(p)
		if err1 != nil || err2 != nil {
			return nil, invalid("the broker URL has a bad percent-escape in its user info (write '%%' itself as %%25)")
		}
		r.secrets = append(r.secrets, dp)
		r.user, r.password, r.hasPass = du, dp, hasPass
	}
	var q string
	rest, q, _ = strings.Cut(rest, "?")
	r.hosts, r.path = rest, ""
	if i := strings.Index(rest, "/"); i >= 0 {
		r.hosts, r.path = rest[:i], rest[i:]
	}
	r.shown = r.redacted(q)
	vals, err := url.ParseQuery(q)
	if err != nil {
		return nil, invalid("%s: the query has a bad percent-escape or ';' (write '%%' itself as %%25)", r.shown)
	}
	for k, v := range vals {
		if len(v) > 1 {
			return nil, invalid("%s: parameter %q is given %d times", r.shown, k, len(v))
		}
	}
	r.query = vals
	return r, nil
}

// redacted returns the URL as shown: the password replaced, the rest as
// written, and any secret candidate scrubbed from the rest.
func (r *rawURL) redacted(query string) string {
	user := ""
	if r.hasUser {
		user = url.User(r.user).String()
		if r.hasPass {
			user += ":" + redactedPassword
		}
		user += "@"
	}
	tail := r.hosts + r.path
	if query != "" {
		tail += "?" + query
	}
	for _, s := range r.secrets {
		if len(s) >= 3 { // short strings would blank out ordinary text
			tail = strings.ReplaceAll(tail, s, redactedPassword)
		}
	}
	return r.scheme + "://" + user + tail
}

// Redact returns rawURL with its password, if any, replaced by "xxxxx":
// what this package's errors show. A URL too malformed to split shows
// only its scheme, or "(unparsable URL)" without one, since its
// password could be anywhere.
func Redact(rawURL string) string {
	r, err := splitURL(rawURL)
	if err == nil {
		return r.shown
	}
	if scheme, _, ok := strings.Cut(rawURL, "://"); ok && !strings.ContainsAny(scheme, "/?#@: ") {
		return strings.ToLower(scheme) + "://(unparsable)"
	}
	return "(unparsable URL)"
}
