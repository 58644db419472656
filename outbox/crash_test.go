package outbox_test

import (
	"fmt"
	"os"
)

// childEnv names the role of a re-executed test binary (see TestMain).
const childEnv = "FERRY_OUTBOX_CHILD"

func runChild(role string) int {
	fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
	return 2
}
