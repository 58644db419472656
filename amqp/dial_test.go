package amqp_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
)

// silentListener accepts TCP connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "amqp://guest:guest@" + ln.Addr().String() + "/"
}

// TestConstructorsDialTimeout: against a port that accepts TCP and never
// answers, the constructors return within their dial timeout with an
// error that says so.
func TestConstructorsDialTimeout(t *testing.T) {
	url := silentListener(t)
	check := func(t *testing.T, bound time.Duration, f func() (func(), error)) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			closer, err := f()
			if err == nil {
				closer()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("the constructor succeeded against a silent port")
			}
			if !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "WithDialTimeout") {
				t.Errorf("error %q does not say the dial timed out (WithDialTimeout)", err)
			}
			t.Logf("error: %v", err)
		case <-time.After(bound):
			t.Fatalf("the constructor did not return within %v", bound)
		}
	}
	t.Run("WithDialTimeout", func(t *testing.T) {
		t.Parallel()
		check(t, 10*time.Second, func() (func(), error) {
			s, err := amqp.NewSubscriber(url, amqp.WithDialTimeout(200*time.Millisecond))
			return func() { s.Close() }, err
		})
	})
	t.Run("URL connection_timeout", func(t *testing.T) {
		t.Parallel()
		check(t, 10*time.Second, func() (func(), error) {
			p, err := amqp.NewPublisher(url + "?connection_timeout=200")
			return func() { p.Close() }, err
		})
	})
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		// The default is 10 s; the bound is generous, and below the
		// client's own 30 s.
		check(t, 25*time.Second, func() (func(), error) {
			p, err := amqp.NewPublisher(url)
			return func() { p.Close() }, err
		})
	})
}
