package messagetest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// ErrKilled is the error a KillSwitch's dialer returns once it was killed.
var ErrKilled = errors.New("messagetest: kill switch: this client was killed")

// KillSwitch is one client's network, for implementing Harness.Kill: give
// the client its DialContext (or Dial) as the dialer, and every connection
// it makes goes through the switch; Kill closes them all at once and
// refuses new ones, so the client can no longer reach the broker, as if its
// process had died. A dialer sees every connection a client makes,
// including those to addresses it learns from the broker (Kafka clients
// connect to the brokers the cluster's metadata advertises, not only to
// the seeds), and it starts no goroutines. Safe for concurrent use.
type KillSwitch struct {
	base func(ctx context.Context, network, addr string) (net.Conn, error)

	mu    sync.Mutex
	dead  bool
	conns map[*switchedConn]struct{}
}

// NewKillSwitch returns a live switch that dials with base, or with a
// net.Dialer when base is nil.
func NewKillSwitch(base func(ctx context.Context, network, addr string) (net.Conn, error)) *KillSwitch {
	if base == nil {
		var d net.Dialer
		base = d.DialContext
	}
	return &KillSwitch{base: base, conns: make(map[*switchedConn]struct{})}
}

// DialContext dials addr through the switch; after Kill it returns
// ErrKilled.
func (k *KillSwitch) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if k.Killed() {
		return nil, ErrKilled
	}
	c, err := k.base(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead {
		c.Close()
		return nil, ErrKilled
	}
	sc := &switchedConn{Conn: c, k: k}
	k.conns[sc] = struct{}{}
	return sc, nil
}

// Dial is DialContext without a context, for clients whose dialer has no
// context parameter (amqp091.Config.Dial).
func (k *KillSwitch) Dial(network, addr string) (net.Conn, error) {
	return k.DialContext(context.Background(), network, addr)
}

// Kill closes every connection made through the switch and makes it
// refuse new ones. Calling it again does nothing.
func (k *KillSwitch) Kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dead = true
	for c := range k.conns {
		c.Conn.Close()
		delete(k.conns, c)
	}
}

// Killed reports whether Kill was called.
func (k *KillSwitch) Killed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dead
}

// switchedConn is a connection made through a KillSwitch.
type switchedConn struct {
	net.Conn
	k *KillSwitch
}

func (c *switchedConn) Close() error {
	c.k.mu.Lock()
	delete(c.k.conns, c)
	c.k.mu.Unlock()
	return c.Conn.Close()
}

// KillSwitches maps the subscribers a harness made to their kill switches.
// Its Kill method is a Harness.Kill. The zero value is ready to use.
//
//	var kills messagetest.KillSwitches
//	h := messagetest.Harness{
//		NewSubscriber: func(t testing.TB, cfg messagetest.SubscriberConfig) (message.Subscriber, error) {
//			ks := messagetest.NewKillSwitch(nil)
//			s, err := newSubscriber(cfg, ks.DialContext)
//			if err == nil {
//				kills.Add(t, s, ks)
//			}
//			return s, err
//		},
//		Kill: kills.Kill,
//	}
type KillSwitches struct {
	mu    sync.Mutex
	bySub map[message.Subscriber]*KillSwitch
}

// Add records ks as s's switch until t ends.
func (k *KillSwitches) Add(t testing.TB, s message.Subscriber, ks *KillSwitch) {
	k.mu.Lock()
	if k.bySub == nil {
		k.bySub = make(map[message.Subscriber]*KillSwitch)
	}
	k.bySub[s] = ks
	k.mu.Unlock()
	t.Cleanup(func() {
		k.mu.Lock()
		delete(k.bySub, s)
		k.mu.Unlock()
	})
}

// Kill kills s's switch. It fails t when s has none.
func (k *KillSwitches) Kill(t testing.TB, s message.Subscriber) {
	t.Helper()
	k.mu.Lock()
	ks := k.bySub[s]
	k.mu.Unlock()
	if ks == nil {
		t.Fatalf("messagetest: KillSwitches.Kill: subscriber %T %p has no kill switch (Add it in NewSubscriber)", s, s)
	}
	ks.Kill()
}
