package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// DeadLetter is a message the broker rejected for good, kept in the dead
// table (Outbox.DeadTable) with the error.
type DeadLetter struct {
	// Seq is the row's sequence number in the outbox table, its key in
	// the dead table.
	Seq int64
	// Topic is the topic it was written for.
	Topic string
	// Message holds the ID, key, payload, headers and time as written.
	Message *message.Message
	// Attempts is the number of publish attempts.
	Attempts int
	// Error is the broker's (or adapter's) error text.
	Error string
	// WrittenAt is when Write added it; FailedAt when it was moved.
	WrittenAt, FailedAt time.Time
}

// DeadLetters returns up to limit dead letters, oldest (lowest Seq) first.
func (o *Outbox) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	if o == nil || ctx == nil {
		return nil, invalidConfig("DeadLetters: nil *Outbox or context")
	}
	if limit < 1 {
		return nil, invalidConfig("DeadLetters(%d): limit must be positive", limit)
	}
	rs, err := o.db.QueryContext(ctx, o.q(`SELECT seq, topic, msg_id, msg_key, payload, headers, msg_time, created_at, attempts, error, failed_at
FROM {t}_dead ORDER BY seq LIMIT $1`), limit)
	if err != nil {
		return nil, o.wrap("read dead letters", err)
	}
	defer rs.Close()
	var out []DeadLetter
	for rs.Next() {
		var x row
		var d DeadLetter
		var created, failed int64
		if err := rs.Scan(&x.seq, &x.topic, &x.id, &x.key, &x.payload, &x.headers, &x.msgTime, &created, &d.Attempts, &d.Error, &failed); err != nil {
			return nil, o.wrap("read dead letters", err)
		}
		m, err := x.message()
		if err != nil {
			m = &message.Message{ID: x.id, Key: x.key, Payload: x.payload, Time: time.UnixMicro(x.msgTime)}
		}
		d.Seq, d.Topic, d.Message = x.seq, x.topic, m
		d.WrittenAt, d.FailedAt = time.UnixMicro(created), time.UnixMicro(failed)
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, o.wrap("read dead letters", err)
	}
	return out, nil
}

// Replay moves the dead letters with the given sequence numbers back into
// the outbox, to be published again (after fixing what the broker
// rejected: a topic, a size limit). They get new sequence numbers: each
// is published after the rows of its key written before the replay, and
// keeps its ID. It returns how many it moved; unknown numbers are
// ignored.
func (o *Outbox) Replay(ctx context.Context, seqs ...int64) (int, error) {
	return o.moveFromDead(ctx, "replay dead letters", true, seqs)
}

// DiscardDead deletes the dead letters with the given sequence numbers
// and returns how many it deleted.
func (o *Outbox) DiscardDead(ctx context.Context, seqs ...int64) (int, error) {
	return o.moveFromDead(ctx, "discard dead letters", false, seqs)
}

func (o *Outbox) moveFromDead(ctx context.Context, op string, back bool, seqs []int64) (int, error) {
	if o == nil || ctx == nil {
		return 0, invalidConfig("%s: nil *Outbox or context", op)
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, o.wrap(op, err)
	}
	defer tx.Rollback()
	list := seqList(seqs)
	if back {
		ins := `INSERT INTO {t} (shard, topic, msg_id, msg_key, payload, headers, msg_time, created_at)
SELECT shard, topic, msg_id, msg_key, payload, headers, msg_time, $1 FROM {t}_dead WHERE seq IN (` + list + `) ORDER BY seq`
		if o.notify {
			ins = `WITH ins AS (` + ins + ` RETURNING shard) SELECT pg_notify('` + o.channel + `', s::text) FROM (SELECT DISTINCT shard AS s FROM ins) d`
		}
		if _, err := tx.ExecContext(ctx, o.q(ins), o.now().UnixMicro()); err != nil {
			return 0, o.wrap(op, err)
		}
	}
	res, err := tx.ExecContext(ctx, o.q(`DELETE FROM {t}_dead WHERE seq IN (`+list+`)`))
	if err != nil {
		return 0, o.wrap(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, o.wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, o.wrap(op, err)
	}
	return int(n), nil
}

// Pending returns the number of rows not published yet.
func (o *Outbox) Pending(ctx context.Context) (int64, error) {
	if o == nil || ctx == nil {
		return 0, invalidConfig("Pending: nil *Outbox or context")
	}
	var n int64
	if err := o.db.QueryRowContext(ctx, o.q(`SELECT count(*) FROM {t} WHERE published_at IS NULL`)).Scan(&n); err != nil {
		return 0, o.wrap("count pending rows", err)
	}
	return n, nil
}

func (o *Outbox) wrap(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("outbox: %s on %s: %w", op, o.table, err)
}

// Purge deletes the published rows kept longer than the retention
// (WithRetention) and returns how many it deleted. Running relays call it
// about every tenth of the retention (between 1 s and 1 min); without a
// retention there is nothing to purge.
func (o *Outbox) Purge(ctx context.Context) (int64, error) {
	if o == nil || ctx == nil {
		return 0, invalidConfig("Purge: nil *Outbox or context")
	}
	if o.retention <= 0 {
		return 0, nil
	}
	cutoff := o.now().Add(-o.retention).UnixMicro()
	res, err := o.db.ExecContext(ctx, o.q(`DELETE FROM {t} WHERE published_at IS NOT NULL AND published_at <= $1`), cutoff)
	if err != nil {
		return 0, o.wrap("purge published rows", err)
	}
	return res.RowsAffected()
}
