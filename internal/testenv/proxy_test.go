package testenv

import (
	"bufio"
	"net"
	"runtime"
	"testing"
	"time"
)

// echo serves one line back per connection until the listener closes.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn) error {
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

// echoViaProxy is a proxy to an echo server and a connection through it
// that has made one round trip.
func echoViaProxy(t *testing.T) (*Proxy, net.Conn) {
	t.Helper()
	p := NewProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := roundTrip(c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	return p, c
}

func TestProxyCutDownUp(t *testing.T) {
	p, c := echoViaProxy(t)
	p.Cut()
	if err := roundTrip(c); err == nil {
		t.Fatal("a cut connection still carries data")
	}
	p.Down()
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		if roundTrip(c2) == nil {
			t.Fatal("a connection made during an outage carries data")
		}
		c2.Close()
	}
	p.Up()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}

func TestProxyHoldRelease(t *testing.T) {
	p, c := echoViaProxy(t)
	if got := p.Sent(); got != 5 {
		t.Fatalf("Sent = %d after one ping, want 5", got)
	}
	p.Hold()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	for p.Sent() < 10 {
		runtime.Gosched() // the request reaches the target while replies are held
	}
	// The echo has replied by now or soon; held, the reply must not
	// arrive (the deadline only ends the read).
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("got %q while the proxy held replies", line)
	}
	p.Release()
	_ = c.SetReadDeadline(time.Time{})
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("after Release: %q, %v; want the held ping", line, err)
	}
}
