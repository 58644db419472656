package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"
)

// A claim is the fast path of a PostgreSQL relay without retention: one
// statement removes a batch of a shard's rows and returns them, in a
// transaction that stays open while the rows are published. It commits
// only after Publish returned nil for every row (a row is removed only
// after Publish returned nil for it); on any failure it rolls back, and
// the rows are handled one by one as after a plain read. A relay that
// dies meanwhile leaves the transaction to be rolled back by the server
// with its session, and the rows are published again by the next owner.
//
// Against a read followed by a DELETE of the published sequence numbers,
// it saves a statement and the second index lookup of every row: the
// rows are found once, through the pending index, and removed by their
// physical address (ctid). Their row locks, held until the commit, also
// make a second relay that wrongly owns the shard (after a lost lock
// session) wait instead of publishing the same rows.
//
// The claim runs on pgx's own API (conn.Raw): BEGIN, the SET and the
// DELETE go in one round trip, and the rows are decoded without
// database/sql's copies. With another driver the relay reads and then
// deletes what it published, in two statements.
type claim struct {
	conn   *sql.Conn // the session the transaction is open on
	cancel context.CancelFunc
	n      int // rows removed
	done   bool
}

// pgxConn is what pgx's database/sql driver connection offers.
type pgxConn interface{ Conn() *pgx.Conn }

// claims reports whether the worker uses claims: on PostgreSQL, when
// published rows are deleted (no retention), and not after a failed
// attempt (then only the first row of each key is sent, and a claim
// would remove the rest).
func (w *worker) claims() bool {
	o := w.r.o
	return o.dialect == PostgreSQL && o.retention == 0 && !w.careful && !w.r.notPgx.Load()
}

// claim removes up to a batch of shard's pending rows in a new
// transaction and returns them in sequence order. The transaction's
// context is bounded by the database timeout plus the publish timeout,
// and not cancelled with the relay: a batch in flight is finished. It
// returns a nil claim, and notes it for the relay, when the driver is not
// pgx's.
func (w *worker) claim(shard int) (*claim, []row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout+w.r.publishTimeout)
	conn, err := w.r.o.db.Conn(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	var rows []row
	q, args := w.claimQuery(shard)
	var failed error
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(pgxConn)
		if !ok {
			w.r.notPgx.Store(true)
			return nil
		}
		rows, failed = takeNative(ctx, pc.Conn(), q, args, w.r.batch)
		if failed != nil {
			// The session may be in the transaction still: close
			// it rather than return it to the pool.
			return driver.ErrBadConn
		}
		return nil
	})
	if err != nil || failed != nil || w.r.notPgx.Load() {
		_ = conn.Close()
		cancel()
		if failed != nil {
			return nil, nil, failed
		}
		return nil, nil, err
	}
	// RETURNING comes in the order of the ctids, not of seq.
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
	if mutant == mutantNaiveCursor && len(rows) > 0 {
		w.cursor[shard] = rows[len(rows)-1].seq
	}
	return &claim{conn: conn, cancel: cancel, n: len(rows)}, rows, nil
}

// claimSettings is the first statement of a claim's transaction.
//
// synchronous_commit off: a removal lost to a database crash only makes
// the rows be published again (same IDs), so the commit need not wait
// for the WAL flush.
//
// enable_sort off (see readSettings): the batch must be read through the
// pending index in its order, whatever the table's statistics say.
const claimSettings = `SELECT set_config('synchronous_commit', 'off', true), ` + readSettings

// readSettings makes PostgreSQL read a shard's batch by walking the
// pending index (shard, seq) in order and stop after the batch. An
// outbox table's statistics are nearly always wrong (analyzed when it
// was empty, or never): planned on them, the read becomes a bitmap scan
// of every pending row of the shard and a sort, so each batch costs in
// proportion to the backlog (measured: 6-170 ms instead of 2-3 ms for
// 500 rows of 1 KiB, with 6,000 pending in the shard). With sorting
// disabled for the transaction, the ordered index scan is the plan.
const readSettings = `set_config('enable_sort', 'off', true)`

// claimQuery returns the claim's statement and arguments.
func (w *worker) claimQuery(shard int) (string, []any) {
	// The subquery finds the batch through the pending index (shard,
	// seq), in sequence order; the DELETE fetches the rows by ctid (a
	// row updated meanwhile, by a relay that lost its shard, has a new
	// ctid and is skipped: it stays pending). One snapshot for both: the
	// batch is what a plain read would return.
	where := `shard = $1 AND published_at IS NULL`
	args := []any{shard, w.r.batch}
	if mutant == mutantNaiveCursor {
		// See read: the high-water mark of Watermill's #311.
		where += ` AND seq > $3`
		args = append(args, w.cursor[shard])
	}
	q := `DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE ` + where + ` ORDER BY seq LIMIT $2))
RETURNING seq, topic, msg_id, msg_key, payload, headers, msg_time, attempts`
	return w.r.o.q(q), args
}

// takeNative begins the transaction and runs the claim on pgx, in one
// round trip.
func takeNative(ctx context.Context, c *pgx.Conn, q string, args []any, batch int) ([]row, error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(claimSettings)
	b.Queue(q, args...)
	br := c.SendBatch(ctx, b)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	rs, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	rows := make([]row, 0, batch)
	// The topic and the headers repeat from row to row: one string
	// each while they do (both are text, whose binary form is the text).
	var topic, headers string
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.seq, nil, &x.id, &x.key, &x.payload, nil, &x.msgTime, &x.attempts); err != nil {
			return nil, err
		}
		raw := rs.RawValues()
		if raw[1] == nil || raw[5] == nil {
			return nil, errors.New("outbox: NULL topic or headers in the outbox table")
		}
		if string(raw[1]) != topic {
			topic = string(raw[1])
		}
		if string(raw[5]) != headers {
			headers = string(raw[5])
		}
		x.topic, x.headers = topic, headers
		rows = append(rows, x)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	rs.Close()
	return rows, br.Close()
}

// errCommitRolledBack: COMMIT answered ROLLBACK (the transaction had
// failed).
var errCommitRolledBack = errors.New("outbox: the claim's transaction was rolled back at commit")

// commit makes the removal stand.
func (c *claim) commit() error {
	if c.done {
		return sql.ErrTxDone
	}
	c.done = true
	defer c.cancel()
	return c.finish("COMMIT")
}

// finish ends the native claim's transaction with stmt and returns the
// session to the pool (or closes it, after an error).
func (c *claim) finish(stmt string) error {
	ctx, cancel := dbContext()
	defer cancel()
	var failed error
	err := c.conn.Raw(func(dc any) error {
		tag, err := dc.(pgxConn).Conn().Exec(ctx, stmt)
		if err == nil && stmt == "COMMIT" && tag.String() != "COMMIT" {
			err = errCommitRolledBack
		}
		if err != nil {
			failed = err
			return driver.ErrBadConn // the session's state is unknown: close it
		}
		return nil
	})
	_ = c.conn.Close()
	if failed != nil {
		return failed
	}
	return err
}

// end rolls the claim back unless it was committed.
func (c *claim) end() {
	if c.done {
		return
	}
	c.done = true
	_ = c.finish("ROLLBACK")
	c.cancel()
}
