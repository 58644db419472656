package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
// Inside one process, a Need* call made while a restart of its service
// waits or runs waits for that restart (gate), instead of taking a new
// shared lock that would keep the restart waiting on its own process.

// lockWait bounds the wait for a service lock.
const lockWait = 10 * time.Minute

var (
	lockMu sync.Mutex
	held   = map[string]*os.File{} // shared locks this process holds
	gates  = map[string]*sync.RWMutex{}
)

// gate is service's in-process gate: Need* calls hold it shared while
// they take the service's lock, a restart holds it exclusive.
func gate(service string) *sync.RWMutex {
	lockMu.Lock()
	defer lockMu.Unlock()
	g := gates[service]
	if g == nil {
		g = new(sync.RWMutex)
		gates[service] = g
	}
	return g
}

func lockPath(service string) string {
	return filepath.Join(os.TempDir(), "ferry-testenv-"+service+".lock")
}

// useService takes this process's shared lock on service, once.
func useService(t testing.TB, service string) {
	t.Helper()
	g := gate(service)
	g.RLock()
	defer g.RUnlock()
	takeShared(t, service)
}

// takeShared takes the shared lock on service unless this process holds
// it already.
func takeShared(t testing.TB, service string) {
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
	g := gate(service)
	g.Lock()
	lockMu.Lock()
	if f := held[service]; f != nil {
		f.Close() // closing the file drops its lock
		delete(held, service)
	}
	lockMu.Unlock()
	f, err := lockFile(service, true)
	if err != nil {
		g.Unlock()
		t.Fatalf("testenv: before restarting %s: %v", service, err)
	}
	return func() {
		defer g.Unlock()
		f.Close()
		takeShared(t, service)
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
			return nil, fmt.Errorf("waited %v for %s (lock file %s; %s)", lockWait, what, f.Name(), lockHolders(f))
		}
		time.Sleep(50 * time.Millisecond) // polling a lock held by another process
	}
}

// describeHolders lists the flock holders of inode ino in locks (the
// format of /proc/locks), each with its mode, PID and command line
// (cmdline; self marks this process), at most 200 bytes of it.
func describeHolders(locks []byte, ino uint64, self int, cmdline func(pid int) string) string {
	suffix := ":" + strconv.FormatUint(ino, 10)
	var out []string
	for line := range strings.Lines(string(locks)) {
		fields := strings.Fields(line)
		// "1: FLOCK  ADVISORY  READ 9733 08:01:9978075 0 EOF"; a
		// waiter's line has "->" after the number.
		if len(fields) > 1 && fields[1] == "->" {
			continue
		}
		if len(fields) < 6 || fields[1] != "FLOCK" || !strings.HasSuffix(fields[5], suffix) {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil {
			continue
		}
		who := cmdline(pid)
		if pid == self {
			who = "this process"
		}
		if len(who) > 200 {
			who = who[:200] + "..."
		}
		out = append(out, fmt.Sprintf("%s by pid %d (%s)", strings.ToLower(fields[3]), pid, who))
	}
	if len(out) == 0 {
		return "no holder listed in /proc/locks"
	}
	return "held: " + strings.Join(out, ", ")
}
