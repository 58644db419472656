package testenv

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 between clients and a broker, for fault
// tests. Cut severs every proxied connection, like a network failure or a
// broker restart, without touching the broker; Down also refuses new
// connections until Up (an outage).
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	down  bool
	held  chan struct{} // non-nil while Hold holds replies; closed by Release
	sent  int64         // bytes forwarded from clients to the target
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to target (host:port). It is closed, with every
// connection it carries, when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// NewURLProxy starts a proxy to the host of brokerURL (port defaultPort
// when it names none) and returns it with the URL that goes through it.
func NewURLProxy(t testing.TB, brokerURL, defaultPort string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	p := NewProxy(t, target)
	u.Host = p.Addr()
	return p, u.String()
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		b, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.conns[b] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(b, c, true)
		go p.pipe(c, b, false)
	}
}

func (p *Proxy) pipe(dst, src net.Conn, toTarget bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			held := p.held
			if toTarget {
				p.sent += int64(n)
			}
			p.mu.Unlock()
			if held != nil && !toTarget {
				<-held // replies wait for Release (or the proxy's end)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Hold stops forwarding what the target sends until Release: requests
// still reach the target, its replies wait (a slow broker, exactly). A
// connection cut meanwhile ends once Release is called.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Release forwards the replies Hold kept back, and those that follow.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// Sent is how many bytes the proxy has forwarded from its clients to the
// target so far.
func (p *Proxy) Sent() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// Cut closes every proxied connection; new ones are accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Down cuts every connection and refuses new ones until Up: an outage.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.Cut()
}

// Up ends an outage.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.Release()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
