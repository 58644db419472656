// Package mutanttest runs a test suite against planted bugs (mutants) in
// child processes of the test binary and checks that the suite catches
// each one: the subtests a mutant must break fail, and those it cannot
// break still pass. The suites messagetest, retrytest and dedupetest use
// it from their mutants tests.
//
// The test binary has two tests: TestMutantChild, which runs the suite on
// the mutant named by an environment variable (or on the healthy adapter
// when it is unset), and TestSuiteCatchesMutants, which calls Check.
package mutanttest

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Case is one mutant: its name (the value of the environment variable in
// its child process), the suite's subtests (as named in t.Run) that must
// fail on it, and those that must still pass on it.
type Case struct {
	Name   string
	Fails  []string
	Passes []string
}

// Child returns the mutant this process runs as: the value of env, empty
// in the parent.
func Child(env string) string { return os.Getenv(env) }

// SubtestName is the name go test gives t.Run(name).
func SubtestName(name string) string { return strings.ReplaceAll(name, " ", "_") }

// Check runs TestMutantChild of this test binary once per case, in
// parallel, with env set to the case's name, and fails t when a subtest in
// Fails did not fail or one in Passes did not pass. It skips in a child
// process and with -short.
func Check(t *testing.T, env string, cases []Case) {
	t.Helper()
	if Child(env) != "" {
		t.Skip("running as a mutant child process")
	}
	if testing.Short() {
		t.Skip("runs the suite in child processes; skipped with -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cases {
		t.Run(SubtestName(m.Name), func(t *testing.T) {
			t.Parallel()
			var parts []string
			for _, f := range append(slices.Clone(m.Fails), m.Passes...) {
				parts = append(parts, regexp.QuoteMeta(SubtestName(f)))
			}
			run := "^TestMutantChild$/^(" + strings.Join(parts, "|") + ")$"
			cmd := exec.Command(exe, "-test.run="+run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), env+"="+m.Name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("mutant child: want a failing exit, got %v\n%s", err, out)
			}
			for _, f := range m.Fails {
				if want := "--- FAIL: TestMutantChild/" + SubtestName(f) + " "; !strings.Contains(string(out), want) {
					t.Errorf("subtest %q did not fail on this mutant; child output:\n%s", f, out)
				}
			}
			for _, f := range m.Passes {
				if want := "--- PASS: TestMutantChild/" + SubtestName(f) + " "; !strings.Contains(string(out), want) {
					t.Errorf("subtest %q did not pass on this mutant, which it cannot detect; child output:\n%s", f, out)
				}
			}
		})
	}
}
