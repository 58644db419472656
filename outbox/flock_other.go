//go:build !unix

package outbox

import "os"

// flock is not available here: only the in-process check of lockSQLite
// applies.
func flock(*os.File) (bool, error) { return true, nil }
