package outbox

import "os"

// MutantEnv names the planted bug (see mutant.go) a mutant child process
// of the test binary runs with.
const MutantEnv = "FERRY_OUTBOX_MUTANT"

func init() { mutant = os.Getenv(MutantEnv) }
