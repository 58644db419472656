package outbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// sqliteRelays holds the SQLite outbox tables that have a relay running in
// this process, by database file (or *sql.DB for an in-memory database)
// and table.
var (
	sqliteMu     sync.Mutex
	sqliteRelays = map[string]bool{}
)

// lockSQLite makes sure that only one relay runs on o's table: in this
// process (a registry) and across processes (an exclusive flock on a file
// beside the database, "<db file>.<table>.relay-lock", released by the
// kernel when the process dies, so a restarted relay after a crash takes
// over at once). An in-memory database is checked in this process only.
func lockSQLite(ctx context.Context, o *Outbox) (release func(), err error) {
	var seq int
	var name, file string
	if err := o.db.QueryRowContext(ctx, `SELECT seq, name, file FROM pragma_database_list WHERE name = 'main'`).Scan(&seq, &name, &file); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("outbox: find the SQLite database file: %w", err)
	}
	key := fmt.Sprintf("db %p table %s", o.db, o.table)
	if file != "" {
		if abs, err := filepath.Abs(file); err == nil {
			file = abs
		}
		key = "file " + file + " table " + o.table
	}
	sqliteMu.Lock()
	defer sqliteMu.Unlock()
	if sqliteRelays[key] {
		return nil, fmt.Errorf("%w: on SQLite only one relay may run per outbox table, and one runs in this process on %s", ErrRelayRunning, key)
	}
	var f *os.File
	if file != "" {
		path := file + "." + o.table + ".relay-lock"
		f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("outbox: open the SQLite relay lock file: %w", err)
		}
		ok, err := flock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("outbox: lock %s: %w", path, err)
		}
		if !ok {
			f.Close()
			return nil, fmt.Errorf("%w: on SQLite only one relay may run per outbox table, and another process holds %s", ErrRelayRunning, path)
		}
	}
	sqliteRelays[key] = true
	return func() {
		sqliteMu.Lock()
		defer sqliteMu.Unlock()
		delete(sqliteRelays, key)
		if f != nil {
			f.Close() // drops the flock
		}
	}, nil
}
