package amqp

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxPendingWrite bounds what a coalescingConn holds that the socket has
// not taken yet; a Write beyond it waits, as a full socket buffer would
// make it wait.
const maxPendingWrite = 1 << 20

// coalescingConn is the publisher connection's socket. amqp091-go flushes
// its buffered writer after every published message, one write system call
// each, under the connection's send lock. Here a Write only appends to a
// buffer and a goroutine of the connection writes what has gathered:
// messages published while it is in a write (by concurrent Publish calls,
// or by the next messages of a batch) go out together in its next one.
// Bytes go out in the order written. A write error is returned by the
// Writes after it and closes the socket, so that the client's reader fails
// and the connection is lost and repaired as after any network failure
// (unconfirmed messages are published again).
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	cond    sync.Cond // signalled when pending shrinks or err is set
	pending []byte
	spare   []byte
	err     error
	closed  bool
	busy    bool          // a write to the socket is in progress
	wake    chan struct{} // cap 1: there is something to write, or closed
	done    chan struct{} // closed when the writer goroutine ends
	// writers counts the Publish rounds writing now: with at most one
	// (one batch at a time) a Write with nothing pending goes straight to
	// the socket, since handing it to the writer goroutine would only add
	// a wake-up per message.
	writers *atomic.Int32
}

func newCoalescingConn(c net.Conn, writers *atomic.Int32) *coalescingConn {
	cc := &coalescingConn{Conn: c, wake: make(chan struct{}, 1), done: make(chan struct{}), writers: writers}
	cc.cond.L = &cc.mu
	go cc.writer()
	return cc
}

// coalescingDial wraps dial's connections in coalescingConns.
func coalescingDial(dial func(network, addr string) (net.Conn, error), writers *atomic.Int32) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		if err != nil {
			return nil, err
		}
		return newCoalescingConn(c, writers), nil
	}
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closed && len(c.pending) > 0 && len(c.pending)+len(p) > maxPendingWrite {
		c.cond.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if !c.busy && len(c.pending) == 0 && c.writers.Load() <= 1 {
		// Nothing pending and nobody else publishing: write now. The
		// client serialises Writes, so nothing is appended meanwhile.
		c.busy = true
		c.mu.Unlock()
		n, err := c.Conn.Write(p)
		c.mu.Lock()
		c.busy = false
		if err != nil && c.err == nil {
			c.err = err
			c.pending = nil
		}
		wake := len(c.pending) > 0 || c.closed || c.err != nil
		c.cond.Broadcast()
		c.mu.Unlock()
		if err != nil {
			_ = c.Conn.Close()
		}
		if wake {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		return n, err
	}
	first := len(c.pending) == 0 && !c.busy
	c.pending = append(c.pending, p...)
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// writer writes what gathers in pending until the connection is closed and
// pending is empty, or a write fails.
func (c *coalescingConn) writer() {
	defer close(c.done)
	for {
		<-c.wake
		for {
			c.mu.Lock()
			if len(c.pending) == 0 {
				closed := c.closed
				c.mu.Unlock()
				if closed {
					return
				}
				break
			}
			if c.busy {
				// a direct Write is in progress; it wakes us when done
				c.mu.Unlock()
				break
			}
			out := c.pending
			c.pending = c.spare[:0]
			c.busy = true
			c.mu.Unlock()
			_, err := c.Conn.Write(out)
			c.mu.Lock()
			c.busy = false
			c.spare = out[:0]
			if err != nil {
				c.err = err
				c.pending = nil
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			if err != nil {
				_ = c.Conn.Close()
				return
			}
		}
	}
}

// Close writes what is pending (for at most a second: the client closes
// the socket after its connection.close handshake, or after a failure),
// then closes the socket.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	if already {
		return nil
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	<-c.done
	return c.Conn.Close()
}
