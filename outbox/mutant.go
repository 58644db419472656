package outbox

// mutant names a bug planted for the mutants test, which sets it (through
// export_test.go) in child processes of the test binary to prove that the
// tests catch each bug. It is always empty in a program.
var mutant string

// The planted bugs.
const (
	// mutantNaiveCursor reads with a high-water mark (seq > last read):
	// a row committed after a higher seq was read is never published.
	mutantNaiveCursor = "naive-cursor"
	// mutantNoAck never removes published rows: everything is published
	// again and again.
	mutantNoAck = "no-ack"
	// mutantNoKeyBlock removes the rows of a key published after one of
	// its rows failed, so that row's retry overtakes them.
	mutantNoKeyBlock = "no-key-block"
	// mutantNoShardLock lets every PostgreSQL relay publish every shard
	// without its advisory lock.
	mutantNoShardLock = "no-shard-lock"
)
