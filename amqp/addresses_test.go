package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// closedURL returns an amqp:// URL with the given password on a loopback
// port that nothing listens on (it was just closed).
func closedURL(t *testing.T, password string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "amqp://guest:" + password + "@" + addr + "/"
}

// TestWithAddressesRejectsBadInput: no URL, a URL that does not check, or
// too many fail both constructors with ErrInvalidConfig naming the option
// and the URL's position, never its password.
func TestWithAddressesRejectsBadInput(t *testing.T) {
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("amqp://127.0.0.1:%d/", 10000+i)
	}
	cases := []struct {
		name, mention string
		o             amqp.Option
	}{
		{"none", "WithAddresses(): no URL given", amqp.WithAddresses()},
		{"bad escape", "WithAddresses: URL 2 of 2: the broker URL has a bad percent-escape",
			amqp.WithAddresses("amqp://127.0.0.1:5673/", "amqp://guest:s3cr%zzet@127.0.0.1:5674/")},
		{"scheme", "WithAddresses: URL 1 of 1: the broker URL has a scheme other than",
			amqp.WithAddresses("http://guest:s3cret@127.0.0.1:5674/")},
		{"empty", "WithAddresses: URL 1 of 1: the broker URL is empty", amqp.WithAddresses("")},
		{"too many", "WithAddresses: 65 URLs, the limit is 64", amqp.WithAddresses(many...)},
		{"too many in two calls", "WithAddresses: 65 URLs, the limit is 64",
			amqp.WithOptions(amqp.WithAddresses(many[:64]...), amqp.WithAddresses(many[64]))},
	}
	for _, c := range cases {
		check := func(t *testing.T, err error) {
			t.Helper()
			checkInvalid(t, err, c.mention)
			if err != nil && strings.Contains(err.Error(), "s3cr") {
				t.Errorf("error %q shows the password", err)
			}
		}
		t.Run("publisher "+c.name, func(t *testing.T) {
			_, err := amqp.NewPublisher(unreachable, c.o)
			check(t, err)
		})
		t.Run("subscriber "+c.name, func(t *testing.T) {
			_, err := amqp.NewSubscriber(unreachable, c.o)
			check(t, err)
		})
	}
}

// TestWithAddressesAllDown: when no address answers, the constructor's
// error names each address (password redacted) with its cause, and wraps
// the causes.
func TestWithAddressesAllDown(t *testing.T) {
	a, b := closedURL(t, "pw-one-secret"), closedURL(t, "pw-two-secret")
	_, err := amqp.NewPublisher(a, amqp.WithAddresses(b))
	if err == nil {
		t.Fatal("NewPublisher succeeded with every address down")
	}
	msg := err.Error()
	t.Logf("error: %v", err)
	if !strings.Contains(msg, "none of the 2 broker addresses") {
		t.Errorf("error %q does not say that none of the 2 addresses could be dialled", msg)
	}
	for _, u := range []string{a, b} {
		shown := strings.Replace(u, strings.SplitN(strings.SplitN(u, "@", 2)[0], ":", 3)[2], "xxxxx", 1)
		if !strings.Contains(msg, "dial "+shown) {
			t.Errorf("error %q does not name address %s", msg, shown)
		}
	}
	if strings.Contains(msg, "pw-one-secret") || strings.Contains(msg, "pw-two-secret") {
		t.Errorf("error %q shows a password", msg)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %q does not wrap the dial's ECONNREFUSED", msg)
	}
	if errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("error %q wraps ErrInvalidConfig; the addresses are valid", msg)
	}
	// One address: its own error, as before WithAddresses existed.
	_, err = amqp.NewSubscriber(a)
	if err == nil || strings.Contains(err.Error(), "none of") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("one address down: err = %v, want its dial error alone", err)
	}
}

// TestWithAddressesSkipsDeadAddress: the constructor's URL is down; both
// sides connect to the next address and messages flow.
func TestWithAddressesSkipsDeadAddress(t *testing.T) {
	url := testenv.NeedAMQP(t)
	dead := closedURL(t, "guest")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	pst, sst := newStates(), newStates()
	p := newPub(t, dead, amqp.WithAddresses(url), amqp.WithOnStateChange(pst.record))
	s := newSub(t, dead, amqp.WithAddresses(url), amqp.WithGroup("g"), amqp.WithOnStateChange(sst.record))
	for _, st := range []*states{pst, sst} {
		st.mu.Lock()
		if len(st.seen) != 1 || st.seen[0].State != amqp.StateConnected || !sameHost(st.seen[0].URL, url) {
			t.Errorf("state changes %+v, want one connected to %s", st.seen, url)
		}
		st.mu.Unlock()
	}
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)
	for i := range 5 {
		if err := p.Publish(ctx, topic, &message.Message{ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitIDs(t, []string{"0", "1", "2", "3", "4"})
}

// TestWithAddressesFailover: two addresses of one broker (two proxies).
// When the connected one goes down, Publisher and Subscriber reconnect to
// the other and messages flow; when that one goes down and the first
// returns, they move back; a connection cut on an address that still
// answers is reopened on the next address.
func TestWithAddressesFailover(t *testing.T) {
	url := testenv.NeedAMQP(t)
	pxA, urlA := testenv.NewURLProxy(t, url, "5672")
	pxB, urlB := testenv.NewURLProxy(t, url, "5672")
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	ctx := context.Background()
	pst, sst := newStates(), newStates()
	p := newPub(t, urlA, fastReconnect, amqp.WithAddresses(urlB), amqp.WithOnStateChange(pst.record))
	s := newSub(t, urlA, fastReconnect, amqp.WithAddresses(urlB), amqp.WithGroup("g"), amqp.WithOnStateChange(sst.record))
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)
	var want []string
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := p.Publish(ctx, topic, &message.Message{ID: fmt.Sprint(i)}); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			want = append(want, fmt.Sprint(i))
		}
	}
	lastConnected := func(st *states) string {
		st.mu.Lock()
		defer st.mu.Unlock()
		for i := len(st.seen) - 1; i >= 0; i-- {
			if st.seen[i].State == amqp.StateConnected {
				return st.seen[i].URL
			}
		}
		return ""
	}
	// reconnectedTo waits for both clients' n-th connection and checks
	// it went to url (format names the last address and url).
	reconnectedTo := func(n int, url, format string) {
		t.Helper()
		pst.waitCount(t, amqp.StateConnected, n)
		sst.waitCount(t, amqp.StateConnected, n)
		for _, st := range []*states{pst, sst} {
			if got := lastConnected(st); !sameHost(got, url) {
				t.Fatalf(format, got, url)
			}
		}
	}
	publish(0, 10)
	c.waitIDs(t, want)

	pxA.Down()
	reconnectedTo(2, urlB, "reconnected to %s, want the second address %s")
	publish(10, 20)
	c.waitIDs(t, want)

	pxA.Up()
	pxB.Down()
	reconnectedTo(3, urlA, "reconnected to %s, want the first address %s again")
	publish(20, 30)
	c.waitIDs(t, want)

	// A cut connection (the address still accepts) is retried on the
	// next address first.
	pxB.Up()
	pxA.Cut()
	reconnectedTo(4, urlB, "after a cut, reconnected to %s, want the next address %s")
	publish(30, 40)
	c.waitIDs(t, want)
}

// sameHost reports whether two broker URLs name the same host:port.
func sameHost(a, b string) bool {
	host := func(u string) string {
		_, rest, _ := strings.Cut(u, "://")
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			rest = rest[i+1:]
		}
		h, _, _ := strings.Cut(rest, "/")
		return h
	}
	return host(a) != "" && host(a) == host(b)
}
