//go:build unix

package outbox

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive flock on f without blocking and reports whether
// it got it.
func flock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
