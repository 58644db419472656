//go:build unix

package testenv

import (
	"fmt"
	"os"
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
