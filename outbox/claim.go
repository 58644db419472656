package outbox

import (
	"context"
	"database/sql"
	"slices"
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
type claim struct {
	tx     *sql.Tx
	cancel context.CancelFunc
	n      int // rows removed
	done   bool
}

// claims reports whether the worker uses claims: on PostgreSQL, when
// published rows are deleted (no retention), and not after a failed
// attempt (then only the first row of each key is sent, and a claim
// would remove the rest).
func (w *worker) claims() bool {
	o := w.r.o
	return o.dialect == PostgreSQL && o.retention == 0 && !w.careful
}

// claim removes up to a batch of shard's pending rows in a new
// transaction and returns them in sequence order. The transaction's
// context is bounded by the database timeout plus the publish timeout,
// and not cancelled with the relay: a batch in flight is finished.
func (w *worker) claim(shard int) (*claim, []row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout+w.r.publishTimeout)
	tx, err := w.r.o.db.BeginTx(ctx, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	c := &claim{tx: tx, cancel: cancel}
	rows, err := c.take(ctx, w, shard)
	if err != nil {
		c.end()
		return nil, nil, err
	}
	c.n = len(rows)
	return c, rows, nil
}

func (c *claim) take(ctx context.Context, w *worker, shard int) ([]row, error) {
	// A removal lost to a database crash only makes the rows be
	// published again (same IDs): the commit need not wait for the WAL
	// flush.
	if _, err := c.tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
		return nil, err
	}
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
	rs, err := c.tx.QueryContext(ctx, w.r.o.q(q), args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.seq, &x.topic, &x.id, &x.key, &x.payload, &x.headers, &x.msgTime, &x.attempts); err != nil {
			return nil, err
		}
		rows = append(rows, x)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	// RETURNING comes in the order of the ctids, not of seq.
	slices.SortFunc(rows, func(a, b row) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	if mutant == mutantNaiveCursor && len(rows) > 0 {
		w.cursor[shard] = rows[len(rows)-1].seq
	}
	return rows, nil
}

// commit makes the removal stand.
func (c *claim) commit() error {
	if c.done {
		return sql.ErrTxDone
	}
	c.done = true
	defer c.cancel()
	return c.tx.Commit()
}

// end rolls the claim back unless it was committed.
func (c *claim) end() {
	if c.done {
		return
	}
	c.done = true
	_ = c.tx.Rollback()
	c.cancel()
}
