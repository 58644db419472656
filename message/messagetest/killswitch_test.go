package messagetest_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message/messagetest"
)

func TestKillSwitch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	defer func() {
		ln.Close()
		for range accepted { // until the accept loop has returned
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	ks := messagetest.NewKillSwitch(nil)
	c1, err := ks.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("Dial before Kill: %v", err)
	}
	defer c1.Close()
	c2, err := ks.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("second Dial before Kill: %v", err)
	}
	if err := c2.Close(); err != nil { // a closed connection leaves the switch
		t.Fatalf("Close: %v", err)
	}
	peer := <-accepted
	defer peer.Close()
	<-accepted // c2's peer

	if ks.Killed() {
		t.Fatal("Killed before Kill")
	}
	ks.Kill()
	if !ks.Killed() {
		t.Fatal("not Killed after Kill")
	}
	// The broker's side sees the connection end at once.
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("peer Read after Kill = %d, %v; want 0, EOF", n, err)
	}
	if _, err := c1.Write([]byte("x")); err == nil {
		t.Error("Write on a killed connection succeeded, want an error")
	}
	if _, err := ks.Dial("tcp", ln.Addr().String()); !errors.Is(err, messagetest.ErrKilled) {
		t.Errorf("Dial after Kill returned %v, want ErrKilled", err)
	}
	ks.Kill() // idempotent
}
