package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Service locks. go test runs the packages of ./... in separate processes
// at once, and some tests restart a broker (RestartService): another
// package's tests must not be using it meanwhile. Every process that uses
// a service holds a shared lock on that service's lock file from its first
// Need* call until it exits; RestartService trades its own shared lock for
// an exclusive one, so a restart waits until the other processes using the
// service are done, and their Need* calls wait while a restart runs.

// lockWait bounds the wait for a service lock.
const lockWait = 10 * time.Minute

var (
	lockMu sync.Mutex
	held   = map[string]*os.File{} // shared locks this process holds
)

func lockPath(service string) string {
	return filepath.Join(os.TempDir(), "ferry-testenv-"+service+".lock")
}

// useService takes this process's shared lock on service, once.
func useService(t testing.TB, service string) {
	t.Helper()
	lockMu.Lock()
	defer lockMu.Unlock()
	if held[service] != nil {
		return
	}
	f, err := lockFile(service, false)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	held[service] = f
}

// exclusive releases this process's shared lock on service and takes the
// exclusive one. The returned function releases it and takes the shared
// lock back.
func exclusive(t testing.TB, service string) (release func()) {
	t.Helper()
	lockMu.Lock()
	if f := held[service]; f != nil {
		f.Close() // closing the file drops its lock
		delete(held, service)
	}
	lockMu.Unlock()
	f, err := lockFile(service, true)
	if err != nil {
		t.Fatalf("testenv: before restarting %s: %v", service, err)
	}
	return func() {
		f.Close()
		useService(t, service)
	}
}

// lockFile opens service's lock file and locks it, shared or exclusive,
// waiting at most lockWait.
func lockFile(service string, excl bool) (*os.File, error) {
	f, err := os.OpenFile(lockPath(service), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("service lock: %w", err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		ok, err := tryLock(f, excl)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("service lock %s: %w", f.Name(), err)
		}
		if ok {
			return f, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			what := "a restart of " + service + " by another test process to finish"
			if excl {
				what = "the other test processes using " + service + " to finish"
			}
			return nil, fmt.Errorf("waited %v for %s (lock file %s)", lockWait, what, f.Name())
		}
		time.Sleep(50 * time.Millisecond) // polling a lock held by another process
	}
}
