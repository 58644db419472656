package messagetest_test

import "testing"

// TestExampleSuite runs the example's suite (example_test.go) on inmem, so
// that the example cannot rot.
func TestExampleSuite(t *testing.T) {
	runRedeliverySuite(t, harness(t, nil))
}
