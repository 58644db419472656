package amqp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// State is a connection state reported to WithOnStateChange.
type State int

// Connection states.
const (
	// StateConnected: a connection is open (first dial or reconnection).
	StateConnected State = iota + 1
	// StateDisconnected: the connection was lost (Err says why); ferry
	// reconnects with backoff.
	StateDisconnected
	// StateReconnecting: a reconnection attempt failed (Err says why);
	// another follows after a backoff.
	StateReconnecting
	// StateClosed: Close was called; no more reconnection.
	StateClosed
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// StateChange describes one connection state change.
type StateChange struct {
	// State is the new state.
	State State
	// Err is the cause of a disconnection or of a failed reconnection
	// attempt; nil otherwise. It never contains the URL's password.
	Err error
	// URL is the broker URL with its password redacted: with
	// WithAddresses, the address connected to or last tried.
	URL string
	// Role is "publisher" or "subscriber".
	Role string
	// Attempt counts the reconnection attempts since the connection was
	// lost (0 for the first connection).
	Attempt int
}

// session is one live connection (one generation). down is closed when it
// is lost.
type session struct {
	conn *amqp091.Connection
	gen  uint64
	down chan struct{}
	// careful is set on a connection opened after undecodable losses
	// (see undecodable.go): consumers opened on it take one delivery at
	// a time. stable is closed once such a connection has lived
	// stableConnection, when consumers go back to their prefetch; it is
	// nil on other connections.
	careful bool
	stable  chan struct{}
}

// prefetch returns the Qos prefetch for a consumer opened on s.
func (s *session) prefetch(normal int) int {
	if s.careful {
		select {
		case <-s.stable:
		default:
			return 1
		}
	}
	return normal
}

func (s *session) isDown() bool {
	select {
	case <-s.down:
		return true
	default:
		return false
	}
}

// conn keeps one AMQP connection open, reconnecting with backoff.
type conn struct {
	cfg      *config
	addrs    []address // the URL and WithAddresses' (addresses.go)
	at       int       // addrs index dialled last; set by dialAny only
	redacted string    // addrs[at].shown
	password string
	secrets  []string // scrubbed from every error text (see checkBrokerURL)
	role     string
	writers  atomic.Int32 // publisher: Publish rounds writing now (publisher_conn.go)

	mu    sync.Mutex
	cur   *session
	ready chan struct{} // closed while cur != nil
	gen   uint64

	closed    chan struct{}
	closeOnce sync.Once
	stopping  chan struct{} // closed by stop: waits give up with ErrClosed
	stopOnce  sync.Once
	done      chan struct{}
}

// redactURL returns the URL with its password replaced, and the password
// (see checkBrokerURL; a URL that does not check is not shown at all).
func redactURL(raw string) (string, string) {
	b, err := checkBrokerURL(raw)
	if err != nil {
		return "(invalid URL)", ""
	}
	pw := ""
	if u, err := url.Parse(raw); err == nil {
		pw, _ = u.User.Password()
	}
	return b.shown, pw
}

// scrubbedError hides a password that a client error might echo.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (c *conn) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := scrubText(msg, c.secrets)
	if c.password != "" {
		clean = strings.ReplaceAll(clean, c.password, redactedPassword)
	}
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

// dialConn validates the URL, dials once (so a wrong address or password
// fails the constructor) and starts the supervisor.
func dialConn(rawURL string, cfg *config, role string) (*conn, error) {
	addrs, secrets, err := cfg.addressList(rawURL)
	if err != nil {
		return nil, err
	}
	c := &conn{cfg: cfg, addrs: addrs, redacted: addrs[0].shown, secrets: secrets, role: role,
		ready: make(chan struct{}), closed: make(chan struct{}), stopping: make(chan struct{}), done: make(chan struct{})}
	first, err := c.dialAny(0)
	if err != nil {
		return nil, err
	}
	c.set(first, false)
	c.report(StateChange{State: StateConnected})
	go c.run(first)
	return c, nil
}

func (c *conn) dial(a address) (*amqp091.Connection, error) {
	conf := c.cfg.amqpConfig
	if conf.Properties == nil {
		conf.Properties = amqp091.NewConnectionProperties()
		conf.Properties.SetClientConnectionName("ferry-" + c.role)
	}
	// The timeout bounds the TCP connect (unless WithConfig brought a
	// dialer of its own) and, through a deadline that the client clears
	// once the connection is open, the TLS and AMQP handshakes.
	timeout := cmp.Or(c.cfg.dialTimeout, a.timeout, DefaultDialTimeout)
	if dial := conf.Dial; dial != nil {
		conf.Dial = func(network, addr string) (net.Conn, error) {
			nc, err := dial(network, addr)
			if err != nil {
				return nil, err
			}
			if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
				_ = nc.Close()
				return nil, err
			}
			return nc, nil
		}
	} else {
		conf.Dial = amqp091.DefaultDial(timeout)
	}
	if c.role == "publisher" {
		conf.Dial = coalescingDial(conf.Dial, &c.writers) // publisher_conn.go
	}
	ac, err := amqp091.DialConfig(a.url, conf)
	if err != nil {
		if isTimeout(err) {
			return nil, fmt.Errorf("amqp: dial %s: timed out after %v (WithDialTimeout) without an open AMQP connection: %w", a.shown, timeout, c.scrub(err))
		}
		if looksLikeTLSPort(a.shown, err) {
			return nil, fmt.Errorf("amqp: dial %s: %w (a plain amqp:// URL on what looks like a TLS port: use amqps://)", a.shown, c.scrub(err))
		}
		return nil, fmt.Errorf("amqp: dial %s: %w", a.shown, c.scrub(err))
	}
	return ac, nil
}

// looksLikeTLSPort reports a plain amqp:// dial whose handshake read
// garbage: what a TLS listener's alert looks like to an AMQP 0-9-1 client
// (amqp091-go reports it as a frame error, code 501).
func looksLikeTLSPort(redacted string, err error) bool {
	var ae *amqp091.Error
	return strings.HasPrefix(redacted, "amqp://") && errors.As(err, &ae) &&
		(ae.Code == amqp091.FrameError || strings.Contains(ae.Reason, "frame"))
}

// isTimeout reports a dial or handshake that ran into its deadline. The
// client turns a read error during the handshake into an *amqp091.Error
// with the error's text as its reason.
func isTimeout(err error) bool {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var ae *amqp091.Error
	return errors.As(err, &ae) && strings.HasSuffix(ae.Reason, "i/o timeout")
}

func (c *conn) set(ac *amqp091.Connection, careful bool) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	s := &session{conn: ac, gen: c.gen, down: make(chan struct{}), careful: careful}
	if careful {
		s.stable = make(chan struct{})
	}
	c.cur = s
	close(c.ready)
	return s
}

func (c *conn) unset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		close(c.cur.down)
		c.cur = nil
		c.ready = make(chan struct{})
	}
}

func (c *conn) report(sc StateChange) {
	sc.URL, sc.Role = c.redacted, c.role
	c.cfg.observeState(sc) // logged by WithLogger's message.LogEvents
	if f := c.cfg.onState; f != nil {
		f(sc)
	}
}

// run watches the current connection and replaces it when it is lost.
func (c *conn) run(cur *amqp091.Connection) {
	defer close(c.done)
	// Doubling, ±50 % jitter, forever: the one backoff of ferry.
	b := adapter.NewBackoff(c.cfg.reconnect[0], c.cfg.reconnect[1])
	var streak undecodableStreak // see undecodable.go
	c.mu.Lock()
	sess := c.cur
	c.mu.Unlock()
	for {
		up := time.Now()
		lost := cur.NotifyClose(make(chan *amqp091.Error, 1))
		var cause error
		var lostErr *amqp091.Error
		var stable <-chan time.Time
		var timer *time.Timer
		if sess.careful {
			timer = time.NewTimer(stableConnection)
			stable = timer.C
		}
		for waiting := true; waiting; {
			select {
			case <-c.closed:
				if timer != nil {
					timer.Stop()
				}
				c.unset()
				_ = cur.Close()
				c.report(StateChange{State: StateClosed})
				return
			case <-stable:
				// The careful connection held: the streak is over, and
				// its consumers go back to their prefetch.
				streak = undecodableStreak{}
				close(sess.stable)
				stable = nil
			case e, ok := <-lost:
				if ok && e != nil {
					cause, lostErr = c.scrub(e), e
				} else {
					cause = errors.New("connection closed")
				}
				waiting = false
			}
		}
		if timer != nil {
			timer.Stop()
		}
		c.unset()
		n := streak.observe(lostErr, time.Since(up))
		if n > 0 {
			cause = undecodableCause(n, cause)
		}
		c.report(StateChange{State: StateDisconnected, Err: cause})
		if n > 0 && streak.alarm() {
			c.alarmUndecodable(n, cause)
		}
		if n <= 1 {
			// A new outage starts at the initial interval; a streak of
			// undecodable losses keeps backing off.
			b.Reset()
		}
		for attempt := 1; ; attempt++ {
			t := time.NewTimer(b.NextBackOff())
			select {
			case <-c.closed:
				t.Stop()
				c.report(StateChange{State: StateClosed})
				return
			case <-t.C:
			}
			ac, err := c.dialAny(c.at + 1) // the next address first (addresses.go)
			if err == nil {
				cur = ac
				sess = c.set(ac, streak.n > 0)
				c.report(StateChange{State: StateConnected, Attempt: attempt})
				break
			}
			c.report(StateChange{State: StateReconnecting, Err: err, Attempt: attempt})
		}
	}
}

// alarmUndecodable logs, at Error, a streak of n connection losses to a
// delivery the client cannot decode.
func (c *conn) alarmUndecodable(n int, cause error) {
	if l := c.cfg.logger; l != nil {
		l.Error("ferry amqp: a message the client cannot decode closes the connection each time the broker delivers it, so its queue does not move; "+
			"dead-letter it with a quorum queue's x-delivery-limit, or remove it with the broker's tools (see the amqp package doc, Undecodable deliveries)",
			"role", c.role, "url", c.redacted, "times", n, "err", cause.Error())
	}
}

// get returns the live session, waiting (bounded by ctx) for a
// reconnection when there is none.
func (c *conn) get(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ready := c.cur, c.ready
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.stopping:
			return nil, message.ErrClosed
		}
	}
}

// pause waits after a failure on session s: until s is lost, d passes, ctx
// ends or the conn is closed.
func (c *conn) pause(ctx context.Context, s *session, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.down:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopping:
		return message.ErrClosed
	}
}

// stop makes waits for a connection give up with ErrClosed, while the
// current connection stays open (so outstanding confirms and acks arrive).
func (c *conn) stop() { c.stopOnce.Do(func() { close(c.stopping) }) }

// close stops reconnecting and closes the connection.
func (c *conn) close() {
	c.stop()
	c.closeOnce.Do(func() { close(c.closed) })
	<-c.done
}
