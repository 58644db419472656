//go:build unix

package testenv

import (
	"errors"
	"os"
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
