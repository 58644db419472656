//go:build unix

package testenv

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// The service lock lets any number of users share a service and keeps a
// restart out until they are gone (flock conflicts between open files
// exactly as between processes).
func TestServiceLockSharedExcludesRestart(t *testing.T) {
	svc := fmt.Sprintf("locktest-%d", os.Getpid())
	t.Cleanup(func() { os.Remove(lockPath(svc)) })
	user1, err := lockFile(svc, false)
	if err != nil {
		t.Fatal(err)
	}
	user2, err := lockFile(svc, false)
	if err != nil {
		t.Fatalf("a second user could not share the service: %v", err)
	}
	restart, err := os.OpenFile(lockPath(svc), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer restart.Close()
	for i, u := range []*os.File{user1, user2} {
		if ok, err := tryLock(restart, true); ok || err != nil {
			t.Fatalf("exclusive lock taken (%v, %v) while %d user(s) hold the service", ok, err, 2-i)
		}
		u.Close()
	}
	if ok, err := tryLock(restart, true); !ok || err != nil {
		t.Fatalf("exclusive lock refused (%v, %v) after every user left", ok, err)
	}
	other, err := os.OpenFile(lockPath(svc), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if ok, _ := tryLock(other, false); ok {
		t.Fatal("a user got the service while a restart holds it")
	}
}

// A Need* call made while this process waits to restart the service waits
// for the restart instead of taking a shared lock that would keep the
// restart waiting on its own process.
func TestUseServiceWaitsForOwnRestart(t *testing.T) {
	svc := fmt.Sprintf("locktest-gate-%d", os.Getpid())
	t.Cleanup(func() {
		lockMu.Lock()
		if f := held[svc]; f != nil {
			f.Close()
			delete(held, svc)
		}
		lockMu.Unlock()
		os.Remove(lockPath(svc))
	})
	useService(t, svc)
	// Another process's user: the restart below must wait for it.
	other, err := lockFile(svc, false)
	if err != nil {
		t.Fatal(err)
	}
	restarted := make(chan func())
	go func() { restarted <- exclusive(t, svc) }()
	// Wait until the restart has dropped this process's shared lock.
	for {
		lockMu.Lock()
		dropped := held[svc] == nil
		lockMu.Unlock()
		if dropped {
			break
		}
		runtime.Gosched()
	}
	used := make(chan struct{})
	go func() {
		useService(t, svc)
		close(used)
	}()
	other.Close() // the other process is done: the restart may go ahead
	var release func()
	select {
	case <-used:
		t.Fatal("useService returned while this process's restart waited for the service")
	case release = <-restarted:
	}
	select {
	case <-used:
		t.Fatal("useService returned while this process's restart held the service")
	default:
	}
	release()
	<-used
	lockMu.Lock()
	f := held[svc]
	lockMu.Unlock()
	if f == nil {
		t.Fatal("no shared lock held after the restart")
	}
}

func TestDescribeHolders(t *testing.T) {
	locks := []byte(`1: POSIX  ADVISORY  WRITE 100 08:01:42 0 EOF
2: FLOCK  ADVISORY  READ  9733 08:01:9978075 0 EOF
2: -> FLOCK  ADVISORY  WRITE 9800 08:01:9978075 0 EOF
3: FLOCK  ADVISORY  READ  9734 08:01:9978075 0 EOF
4: FLOCK  ADVISORY  WRITE 9735 08:01:19978075 0 EOF
`)
	got := describeHolders(locks, 9978075, 9734, func(pid int) string { return fmt.Sprintf("/tmp/go-build/outbox.test-%d", pid) })
	want := "held: read by pid 9733 (/tmp/go-build/outbox.test-9733), read by pid 9734 (this process)"
	if got != want {
		t.Errorf("describeHolders:\n got %s\nwant %s", got, want)
	}
	if got := describeHolders(locks, 1, 1, nil); got != "no holder listed in /proc/locks" {
		t.Errorf("no holder: got %q", got)
	}
}

// On Linux the holders come from /proc/locks: a lock this process holds is
// named.
func TestLockHoldersNamesThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/locks"); err != nil {
		t.Skip("no /proc/locks on this system")
	}
	svc := fmt.Sprintf("locktest-holders-%d", os.Getpid())
	t.Cleanup(func() { os.Remove(lockPath(svc)) })
	f, err := lockFile(svc, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, want := lockHolders(f), fmt.Sprintf("read by pid %d (this process)", os.Getpid()); !strings.Contains(got, want) {
		t.Errorf("lockHolders = %q, want it to contain %q", got, want)
	}
}
