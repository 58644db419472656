package outbox

import "os"

// MutantEnv names the planted bug (see mutant.go) a mutant child process
// of the test binary runs with.
const MutantEnv = "FERRY_OUTBOX_MUTANT"

func init() { mutant = os.Getenv(MutantEnv) }

// ClaimStatements returns what a worker of r sends to claim a batch of
// shard: the settings statement, the DELETE ... RETURNING and its
// arguments.
func ClaimStatements(r *Relay, shard int) (settings, query string, args []any) {
	w := r.newWorker([]int{shard}, dbOps{r.o.db}, nil)
	q, args := w.claimQuery(shard)
	return claimSettings, q, args
}
