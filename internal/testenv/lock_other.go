//go:build !unix

package testenv

import "os"

// tryLock does not lock where flock is missing: run broker tests with
// go test -p 1 there.
func tryLock(*os.File, bool) (bool, error) { return true, nil }

// lockHolders cannot name holders where flock is missing.
func lockHolders(*os.File) string { return "holders unknown" }
