package amqp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

// TestCoalescingConnKeepsOrderAndFlushesOnClose: what concurrent and
// sequential Writes hand over reaches the socket whole, each Write's
// bytes together and in the order written, and Close writes what is still
// pending before closing.
func TestCoalescingConnKeepsOrderAndFlushesOnClose(t *testing.T) {
	for _, writers := range []int32{2, 1} {
		t.Run(map[int32]string{2: "coalescing", 1: "direct"}[writers], func(t *testing.T) { testKeepsOrder(t, writers) })
	}
}

func testKeepsOrder(t *testing.T, writers int32) {
	defer goleak.VerifyNone(t)
	client, server := net.Pipe()
	cc := newCoalescingConn(client, publishing(writers))
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	var want bytes.Buffer
	var mu sync.Mutex // orders the Writes as want records them
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := bytes.Repeat([]byte{byte('a' + g)}, 1+i%37)
				mu.Lock()
				want.Write(p)
				if _, err := cc.Write(p); err != nil {
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("socket got %d bytes, want the %d written in order", len(b), want.Len())
	}
	if _, err := cc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
	if err := cc.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestCoalescingConnWriteErrorCloses: once the socket fails a write, later
// Writes return the error (the client then drops the connection) and the
// socket is closed, so that the client's reader fails too.
func TestCoalescingConnWriteErrorCloses(t *testing.T) {
	defer goleak.VerifyNone(t)
	client, server := net.Pipe()
	cc := newCoalescingConn(client, publishing(2))
	_ = server.Close() // the peer is gone: the next write fails
	if _, err := cc.Write([]byte("frame")); err != nil {
		t.Fatalf("first Write = %v, want it taken (the failure shows later)", err)
	}
	<-cc.done // the writer stopped on the failure
	if _, err := cc.Write([]byte("next")); err == nil {
		t.Fatal("Write after a failed socket write returned no error")
	}
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the socket is still open after a failed write")
	}
	_ = cc.Close()
}

// TestCoalescingConnBoundsPending: a Write waits while the socket has not
// taken maxPendingWrite bytes, instead of buffering without bound.
func TestCoalescingConnBoundsPending(t *testing.T) {
	defer goleak.VerifyNone(t)
	client, server := net.Pipe()
	cc := newCoalescingConn(client, publishing(2))
	chunk := make([]byte, maxPendingWrite/4)
	// Nothing reads server: the writer is stuck in its first write, and
	// Writes succeed until pending is full.
	wrote := make(chan int, 16)
	go func() {
		for i := range 16 {
			if _, err := cc.Write(chunk); err != nil {
				close(wrote)
				return
			}
			wrote <- i
		}
		close(wrote)
	}()
	// The first chunk went to the stuck writer; four more fill pending.
	for range 5 {
		<-wrote
	}
	cc.mu.Lock()
	pending := len(cc.pending)
	cc.mu.Unlock()
	if pending > maxPendingWrite {
		t.Fatalf("%d bytes pending, bound %d", pending, maxPendingWrite)
	}
	// Reading drains it all.
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		done <- n
	}()
	for range wrote {
	}
	_ = cc.Close()
	if n := <-done; n != int64(16*len(chunk)) {
		t.Fatalf("read %d bytes, want %d", n, 16*len(chunk))
	}
}

// publishing returns a writers count of n (over 1: Writes are handed to
// the writer goroutine; at most 1: a Write with nothing pending goes
// straight to the socket).
func publishing(n int32) *atomic.Int32 {
	w := new(atomic.Int32)
	w.Store(n)
	return w
}
