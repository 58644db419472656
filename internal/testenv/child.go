package testenv

import (
	"io"
	"os"
	"os/exec"
	"testing"
)

// StartChild starts the test binary again as a child process that runs no
// test (-test.run=^$: its TestMain sees env and plays its part), with env
// ("NAME=value") added to the environment and its standard error going to
// the test's, and returns it with its standard output. The test reads the
// output to its end, then waits for the process.
func StartChild(t testing.TB, env ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}
