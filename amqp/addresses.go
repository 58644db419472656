package amqp

import (
	"fmt"
	"slices"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

// maxAddresses bounds WithAddresses: the URLs of one cluster's nodes.
const maxAddresses = 64

// moreAddresses are WithAddresses' URLs and their secrets.
type moreAddresses struct {
	addrs   []address
	secrets []string
}

// address is one broker URL a connection can be opened to.
type address struct {
	url     string        // as given: dialled, never shown
	shown   string        // password redacted
	timeout time.Duration // the URL's connection_timeout, 0 if none
}

// WithAddresses adds the URLs of other nodes of the same RabbitMQ cluster
// (amqp:// or amqps://, each checked like the constructor's URL; at most
// 64): the constructor's URL and these are the addresses, in this order.
// The first connection tries them in turn until one opens, so the
// constructor fails only when none does, with an error that lists each
// address's failure. When a connection is lost, each reconnection attempt
// tries them all in turn, starting with the one after the address that
// was lost, so a Publisher or Subscriber whose node died moves to the
// next node at the first attempt; WithReconnectBackoff spaces the
// attempts, WithDialTimeout bounds each dial. StateChange.URL names the
// address connected to or last tried. Messages of quorum queues
// (WithQuorumQueues) stay available while a majority of their nodes run.
// Calling it again adds URLs. Publisher and Subscriber. Default: none
// (only the constructor's URL).
func WithAddresses(urls ...string) Option {
	urls = append([]string(nil), urls...)
	return sharedOpt(func(c *config) error {
		if len(urls) == 0 {
			return invalid("WithAddresses(): no URL given; want one or more amqp:// or amqps:// URLs of the cluster's other nodes")
		}
		if len(c.more.addrs)+len(urls) > maxAddresses {
			return invalid("WithAddresses: %d URLs, the limit is %d", len(c.more.addrs)+len(urls), maxAddresses)
		}
		for i, raw := range urls {
			b, err := checkBrokerURL(raw)
			if err != nil {
				// checkBrokerURL's error never shows the URL or its
				// password; it gets the option's name after its prefix.
				why := strings.TrimPrefix(err.Error(), "amqp: "+message.ErrInvalidConfig.Error()+": ")
				return invalid("WithAddresses: URL %d of %d: %s", i+1, len(urls), why)
			}
			c.more.addrs = append(c.more.addrs, address{url: raw, shown: b.shown, timeout: b.timeout})
			c.more.secrets = append(c.more.secrets, b.secrets...)
		}
		return nil
	})
}

// dialAny opens a connection to the first address, counting from start,
// that answers, trying each once; it makes that address the current one
// (c.at, c.redacted). With one address its error is that address's; with
// more, it lists every address's error.
func (c *conn) dialAny(start int) (*amqp091.Connection, error) {
	n := len(c.addrs)
	var errs []error
	for k := range n {
		i := (start + k) % n
		c.at, c.redacted = i, c.addrs[i].shown
		ac, err := c.dial(c.addrs[i])
		if err == nil {
			return ac, nil
		}
		errs = append(errs, err)
	}
	if n == 1 {
		return nil, errs[0]
	}
	// Each error names its address (password redacted) and is scrubbed.
	format := "amqp: none of the %d broker addresses (the URL and WithAddresses) could be dialled: " +
		strings.TrimSuffix(strings.Repeat("%w; ", n), "; ")
	args := []any{n}
	for _, err := range errs {
		args = append(args, err)
	}
	return nil, fmt.Errorf(format, args...)
}

// addressList returns the constructor's URL and WithAddresses' ones, and
// the secrets to scrub from every error text (all of theirs).
func (cfg *config) addressList(rawURL string) ([]address, []string, error) {
	b, err := checkBrokerURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	addrs := append([]address{{url: rawURL, shown: b.shown, timeout: b.timeout}}, cfg.more.addrs...)
	var secrets []string
	for _, s := range append(append([]string(nil), b.secrets...), cfg.more.secrets...) {
		if !slices.Contains(secrets, s) {
			secrets = append(secrets, s)
		}
	}
	// Longest first, as urlSecrets orders them.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return addrs, secrets, nil
}
