package reliability_test

// childEnv names the role of a re-executed test binary (see TestMain).
const childEnv = "FERRY_RELIABILITY_CHILD"

// runChild runs a child role; the crash test's consumer comes next.
func runChild(role string) int { return 2 }
