//go:build unix

package testenv

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// tryLock takes a shared or exclusive flock on f without blocking and
// reports whether it got it.
func tryLock(f *os.File, excl bool) (bool, error) {
	how := syscall.LOCK_SH
	if excl {
		how = syscall.LOCK_EX
	}
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// lockHolders names the processes that hold a lock on f's file, from
// Linux's /proc/locks, for the error of a wait that ran out.
func lockHolders(f *os.File) string {
	fi, err := f.Stat()
	if err != nil {
		return "holders unknown: " + err.Error()
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "holders unknown"
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return "holders unknown: " + err.Error()
	}
	return describeHolders(locks, uint64(st.Ino), os.Getpid(), func(pid int) string {
		cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return "?"
		}
		return string(bytes.TrimSpace(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
	})
}
