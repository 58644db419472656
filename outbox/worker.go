package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// querier is what a worker needs of *sql.DB or *sql.Conn.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// ops runs database work for a worker, on the pool.
//
// fn gets a context of its own, bounded by dbTimeout and not cancelled
// with the relay: pgx closes a connection whose statement is cancelled
// midway, and on PostgreSQL that connection holds the relay's locks.
type ops interface {
	do(fn func(ctx context.Context, q querier) error) error
}

// dbTimeout bounds one database operation of the relay.
const dbTimeout = 30 * time.Second

func dbContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), dbTimeout)
}

type dbOps struct{ db *sql.DB }

// txQuerier runs a worker's statements in a transaction.
type txQuerier struct{ *sql.Tx }

func (txQuerier) BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error) {
	return nil, errors.New("outbox: nested transaction")
}

func (o dbOps) do(fn func(ctx context.Context, q querier) error) error {
	ctx, cancel := dbContext()
	defer cancel()
	return fn(ctx, o.db)
}

// errNoConn: the PostgreSQL lock connection was lost.
var errNoConn = errors.New("outbox: the relay's lock connection is gone")

// row is one outbox row.
type row struct {
	seq      int64
	topic    string
	id, key  string
	payload  []byte
	headers  string
	msgTime  int64
	attempts int
}

// worker publishes the rows of its shards, in seq order per shard.
type worker struct {
	r      *Relay
	shards []int
	ops    ops
	// guard, when set, is checked before each read: on PostgreSQL it
	// pings the session that holds the shard locks, so a relay whose lock
	// session died reads nothing more (another relay may own the shards
	// by then).
	guard func() error
	wake  chan struct{}
	// careful is set after a failed attempt: the next attempt publishes
	// only the first pending row of each key, so that a failure that
	// repeats does not republish the later rows of its key every time.
	careful bool
	cursor  map[int]int64 // the naive-cursor mutant only
}

func (r *Relay) newWorker(shards []int, o ops, guard func() error) *worker {
	return &worker{r: r, shards: shards, ops: o, guard: guard, cursor: map[int]int64{}}
}

// run loops until ctx ends; the batch in flight then is finished.
func (w *worker) run(ctx context.Context) {
	w.wake = w.r.register(w.shards)
	defer w.r.unregister(w.shards)
	bo := w.r.newBackoff()
	poll := time.NewTimer(w.r.poll)
	defer poll.Stop()
	for ctx.Err() == nil {
		// Drain a pending wake-up first: a NOTIFY arriving while we
		// read leaves a token for the wait below.
		select {
		case <-w.wake:
		default:
		}
		full, err := w.step(ctx)
		if err != nil {
			if !sleep(ctx, bo.NextBackOff()) {
				return
			}
			continue
		}
		bo.Reset()
		if full {
			continue
		}
		poll.Reset(w.r.poll)
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-poll.C:
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
	}
}

// step reads and publishes one batch of each shard. full reports that a
// shard had a full batch (read again at once); err that something failed
// (back off).
func (w *worker) step(ctx context.Context) (full bool, err error) {
	var failed error
	for _, s := range w.shards {
		if ctx.Err() != nil {
			return false, nil
		}
		f, err := w.stepShard(ctx, s)
		full = full || f
		if err != nil {
			failed = err
		}
	}
	if failed == nil {
		w.careful = false
	}
	return full, failed
}

func (w *worker) read(ctx context.Context, shard int) ([]row, error) {
	var rows []row
	q := `SELECT seq, topic, msg_id, msg_key, payload, headers, msg_time, attempts FROM {t}
WHERE shard = $1 AND published_at IS NULL ORDER BY seq LIMIT $2`
	args := []any{shard, w.r.batch}
	if mutant == mutantNaiveCursor {
		// The bug this package exists to avoid (Watermill #311): a
		// high-water mark skips a row that commits after a row with a
		// higher sequence number was read.
		q = `SELECT seq, topic, msg_id, msg_key, payload, headers, msg_time, attempts FROM {t}
WHERE shard = $1 AND published_at IS NULL AND seq > $2 ORDER BY seq LIMIT $3`
		args = []any{shard, w.cursor[shard], w.r.batch}
	}
	err := w.ops.do(func(ctx context.Context, qr querier) error {
		if w.r.o.dialect == PostgreSQL {
			// In a transaction of its own, to plan the read with
			// readSettings (see there).
			tx, err := qr.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, `SELECT `+readSettings); err != nil {
				return err
			}
			qr = txQuerier{tx}
		}
		rs, err := qr.QueryContext(ctx, w.r.o.q(q), args...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var x row
			if err := rs.Scan(&x.seq, &x.topic, &x.id, &x.key, &x.payload, &x.headers, &x.msgTime, &x.attempts); err != nil {
				return err
			}
			rows = append(rows, x)
		}
		return rs.Err()
	})
	if mutant == mutantNaiveCursor && len(rows) > 0 {
		w.cursor[shard] = rows[len(rows)-1].seq
	}
	return rows, err
}

// outcome of one row's publish.
type outcome struct {
	err       error
	permanent bool
}

func (w *worker) stepShard(ctx context.Context, shard int) (full bool, err error) {
	if w.guard != nil {
		if err := w.guard(); err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			w.r.fail("check the shard lock", shard, err)
			return false, err
		}
	}
	var rows []row
	var cl *claim
	if w.claims() {
		cl, rows, err = w.claim(shard)
	}
	if cl == nil && err == nil {
		rows, err = w.read(ctx, shard)
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		w.r.fail("read", shard, err)
		return false, err
	}
	if cl != nil {
		// Rolled back unless committed below; a no-op after Commit.
		defer cl.end()
	}
	if len(rows) == 0 {
		return false, nil
	}
	full = len(rows) == w.r.batch
	if w.careful {
		rows = firstPerKey(rows)
	}
	// The batch in flight is finished even when Run's ctx ends, so a
	// graceful stop publishes nothing twice.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.r.publishTimeout)
	defer cancel()
	results := w.publish(wctx, rows)

	var ack, retry []int64
	var dead []int
	blocked := map[string]bool{}
	var firstErr error
	for i, x := range rows {
		res := results[i]
		switch {
		case x.key != "" && blocked[x.key] && mutant != mutantNoKeyBlock:
			// A row of this key failed before it in the batch:
			// publishing it now would overtake that one. It is
			// published again after it (a duplicate with the same
			// ID when this attempt reached the broker).
			retry = append(retry, x.seq)
		case res.err == nil:
			ack = append(ack, x.seq)
		case res.permanent:
			dead = append(dead, i)
		default:
			retry = append(retry, x.seq)
			if x.key != "" {
				blocked[x.key] = true
			}
			if firstErr == nil {
				firstErr = res.err
			}
		}
	}
	if cl != nil {
		if len(ack) == cl.n && mutant != mutantNoAck {
			// Everything published: the claim's removal stands.
			if err := cl.commit(); err != nil {
				w.r.fail("remove published rows (they will be published again)", shard, err)
				return false, err
			}
			w.r.published.Add(int64(len(ack)))
			return full, nil
		}
		// Something failed: undo the claim's removal, then remove
		// what was published and handle the rest one by one, as
		// after a plain read.
		cl.end()
	}
	if err := w.ack(wctx, ack); err != nil {
		w.r.fail("remove published rows (they will be published again)", shard, err)
		return false, err
	}
	w.r.published.Add(int64(len(ack)))
	for _, i := range dead {
		if err := w.moveDead(wctx, rows[i], results[i].err); err != nil {
			w.r.fail("move a rejected row to the dead table", shard, err)
			return false, err
		}
	}
	if len(retry) > 0 {
		w.r.retried.Add(int64(len(retry)))
		w.careful = true
		msg := "<blocked behind an earlier row of its key>"
		if firstErr != nil {
			msg = firstErr.Error()
		}
		_ = w.ops.do(func(wctx context.Context, q querier) error {
			_, err := q.ExecContext(wctx, w.r.o.q(`UPDATE {t} SET attempts = attempts + 1, last_error = $1 WHERE seq IN (`+seqList(retry)+`)`), msg)
			return err
		})
		if firstErr == nil {
			firstErr = errors.New(msg)
		}
		w.r.fail("publish (retrying in order)", shard, firstErr)
		return false, firstErr
	}
	return full, nil
}

// firstPerKey keeps the first row of each key (and every row without a
// key).
func firstPerKey(rows []row) []row {
	seen := map[string]bool{}
	out := rows[:0:0]
	for _, x := range rows {
		if x.key != "" {
			if seen[x.key] {
				continue
			}
			seen[x.key] = true
		}
		out = append(out, x)
	}
	return out
}

// publish publishes rows, one Publish call per topic (in the order of
// the topics' first rows; each call keeps the rows' order), and returns
// each row's outcome.
func (w *worker) publish(ctx context.Context, rows []row) []outcome {
	results := make([]outcome, len(rows))
	var topics []string
	byTopic := map[string][]int{}
	for i, x := range rows {
		if _, ok := byTopic[x.topic]; !ok {
			topics = append(topics, x.topic)
		}
		byTopic[x.topic] = append(byTopic[x.topic], i)
	}
	for _, topic := range topics {
		idx := byTopic[topic]
		msgs := make([]*message.Message, 0, len(idx))
		at := make([]int, 0, len(idx)) // msgs[j] is rows[at[j]]
		for _, i := range idx {
			m, err := rows[i].message()
			if err != nil {
				results[i] = outcome{err: err, permanent: true}
				continue
			}
			msgs = append(msgs, m)
			at = append(at, i)
		}
		if len(msgs) == 0 {
			continue
		}
		err := w.r.pub.Publish(ctx, topic, msgs...)
		if err == nil {
			continue
		}
		var pe *message.PublishError
		if errors.As(err, &pe) {
			for _, f := range pe.Failed {
				if f.Index < 0 || f.Index >= len(at) {
					continue
				}
				ferr := f.Err
				if ferr == nil {
					ferr = fmt.Errorf("publish to %q failed (the publisher gave no error)", topic)
				}
				results[at[f.Index]] = outcome{err: ferr, permanent: f.Err != nil && w.r.permanent(f.Err)}
			}
			continue
		}
		perm := w.r.permanent(err) && ctx.Err() == nil
		if perm && len(msgs) > 1 {
			// The whole call was refused for good (adapters check a
			// call's messages before sending any): find the culprits
			// one by one, so one bad message does not take the
			// others to the dead table.
			w.publishEach(ctx, topic, rows, msgs, at, results)
			continue
		}
		for _, i := range at {
			results[i] = outcome{err: err, permanent: perm}
		}
	}
	return results
}

// publishEach publishes msgs one at a time, in order; after a message
// fails without being permanent, the later ones of its key are not tried
// (they would overtake it) and count as failed too.
func (w *worker) publishEach(ctx context.Context, topic string, rows []row, msgs []*message.Message, at []int, results []outcome) {
	failedKey := map[string]error{}
	for j, m := range msgs {
		i := at[j]
		if err, ok := failedKey[rows[i].key]; ok && rows[i].key != "" {
			results[i] = outcome{err: err}
			continue
		}
		err := w.r.pub.Publish(ctx, topic, m)
		var pe *message.PublishError
		if errors.As(err, &pe) && len(pe.Failed) == 1 && pe.Failed[0].Err != nil {
			err = pe.Failed[0].Err
		}
		if err == nil {
			continue
		}
		perm := w.r.permanent(err) && ctx.Err() == nil
		results[i] = outcome{err: err, permanent: perm}
		if !perm {
			failedKey[rows[i].key] = err
		}
	}
}

// message rebuilds the message of a row.
func (x *row) message() (*message.Message, error) {
	m := &message.Message{ID: x.id, Key: x.key, Payload: x.payload, Time: time.UnixMicro(x.msgTime)}
	switch x.headers {
	case "null": // what Write stores for nil headers: as Unmarshal would
		return m, nil
	case "{}":
		m.Headers = map[string]string{}
		return m, nil
	}
	if err := json.Unmarshal([]byte(x.headers), &m.Headers); err != nil {
		return nil, fmt.Errorf("outbox: %w: row %d has unreadable headers: %v", message.ErrInvalidMessage, x.seq, err)
	}
	return m, nil
}

func seqList(seqs []int64) string {
	var b strings.Builder
	for i, s := range seqs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(s, 10))
	}
	return b.String()
}

// ack removes (or, with a retention, marks) published rows.
func (w *worker) ack(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	if mutant == mutantNoAck {
		return nil
	}
	return w.ops.do(func(ctx context.Context, q querier) error {
		var err error
		if w.r.o.retention > 0 {
			_, err = q.ExecContext(ctx, w.r.o.q(`UPDATE {t} SET published_at = $1 WHERE seq IN (`+seqList(seqs)+`)`), w.r.o.now().UnixMicro())
		} else {
			stmt := `DELETE FROM ` + w.r.o.table + ` WHERE seq IN (` + seqList(seqs) + `)`
			if w.r.o.dialect == PostgreSQL {
				// A removal lost to a database crash only makes the
				// rows be published again (same IDs): it need not
				// wait for the WAL flush. Both statements run in one
				// implicit transaction (no parameters: one simple
				// query).
				stmt = `SET LOCAL synchronous_commit TO OFF; ` + stmt
			}
			_, err = q.ExecContext(ctx, stmt)
		}
		return err
	})
}

// moveDead moves a row the broker rejected for good to the dead table, in
// one transaction.
func (w *worker) moveDead(ctx context.Context, x row, cause error) error {
	o := w.r.o
	text := "unknown error"
	if cause != nil {
		text = cause.Error()
	}
	err := w.ops.do(func(ctx context.Context, q querier) error {
		tx, err := q.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, o.q(`INSERT INTO {t}_dead (seq, shard, topic, msg_id, msg_key, payload, headers, msg_time, created_at, attempts, error, failed_at)
SELECT seq, shard, topic, msg_id, msg_key, payload, headers, msg_time, created_at, attempts + 1, $1, $2 FROM {t} WHERE seq = $3`), text, o.now().UnixMicro(), x.seq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, o.q(`DELETE FROM {t} WHERE seq = $1`), x.seq); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	w.r.dead.Add(1)
	if w.r.logger != nil {
		w.r.logger.Error("outbox relay: the broker rejected a message for good; moved to the dead table",
			"table", o.table, "dead_table", o.DeadTable(), "seq", x.seq, "topic", x.topic, "id", x.id, "key", x.key, "err", cause)
	}
	return nil
}
