package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/internal/sqldialect"
	"github.com/ferrymsg/ferry/message"
)

// DefaultTable is the default table name.
const DefaultTable = "ferry_processed_messages"

// DefaultPurgeInterval is how often, at most, a Claim also deletes expired
// rows.
const DefaultPurgeInterval = time.Minute

// Schema is the DDL for the default table, the same for PostgreSQL and
// SQLite. New runs it (with the configured table name) unless
// WithoutSchemaCreation is given; run it from your migrations instead if
// the application's database user may not create tables. Times are Unix
// microseconds from the store's clock; processed_at is NULL while a claim
// holds the key.
const Schema = `CREATE TABLE IF NOT EXISTS ferry_processed_messages (
	msg_key      TEXT PRIMARY KEY,
	token        BIGINT NOT NULL,
	lease_until  BIGINT NOT NULL,
	processed_at BIGINT
);
CREATE INDEX IF NOT EXISTS ferry_processed_messages_processed_at ON ferry_processed_messages (processed_at);`

// Dialect is the SQL dialect of the database (the same type as
// outbox.Dialect and sqlstore.Dialect: either package's constants work
// with the other).
type Dialect = sqldialect.Dialect

// Dialects.
const (
	// Detect picks the dialect from the database/sql driver's type:
	// drivers whose type name mentions sqlite are SQLite; pgx's stdlib,
	// lib/pq and others mentioning postgres or pgx are PostgreSQL.
	Detect = sqldialect.Detect
	// PostgreSQL: several instances may share one table.
	PostgreSQL = sqldialect.PostgreSQL
	// SQLite, version 3.35 or later (RETURNING); modernc.org/sqlite works
	// without cgo.
	SQLite = sqldialect.SQLite
)

// Store is a dedupe.Store in a SQL table. It is safe for concurrent use by
// many goroutines and, on PostgreSQL, by many processes sharing the table.
// It does not own the *sql.DB: close that yourself.
type Store struct {
	db      *sql.DB
	dialect Dialect
	table   string
	ttl     time.Duration
	now     func() time.Time
	purgeIv time.Duration
	create  bool

	lastPurge atomic.Int64 // unix µs

	qClaim, qStatus, qComplete, qRelease, qExtend, qPurgeDone, qPurgeAbandoned string
}

var _ dedupe.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store) error

// WithDialect sets the SQL dialect. Default Detect.
func WithDialect(d Dialect) Option {
	return func(s *Store) error {
		if d > SQLite {
			return invalidConfig("WithDialect(%v): unknown dialect", d)
		}
		s.dialect = d
		return nil
	}
}

// WithTable sets the table name: letters, digits and underscores, not
// starting with a digit, at most 63 characters, optionally qualified by a
// schema ("schema.table"). Default DefaultTable.
func WithTable(name string) Option {
	return func(s *Store) error {
		if err := sqldialect.CheckTable(name, 63); err != nil {
			return invalidConfig("%s", err)
		}
		s.table = name
		return nil
	}
}

// WithTTL sets how long processed keys are retained; a duplicate arriving
// later runs again. Default dedupe.DefaultTTL (24 h).
func WithTTL(ttl time.Duration) Option {
	return func(s *Store) error {
		if ttl <= 0 {
			return invalidConfig("WithTTL(%v): must be positive", ttl)
		}
		s.ttl = ttl
		return nil
	}
}

// WithClock replaces time.Now, for tests. Leases and retention use the
// clock of the process, so instances sharing a table need clocks that
// agree (NTP) to well within a lease. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) error {
		if now == nil {
			return invalidConfig("WithClock(nil)")
		}
		s.now = now
		return nil
	}
}

// WithPurgeInterval sets how often, at most, a Claim also deletes rows
// processed longer than the TTL ago and claims abandoned for longer than
// the TTL. 0 turns the lazy purge off: call Purge yourself. Default
// DefaultPurgeInterval (1 min). The store starts no goroutine.
func WithPurgeInterval(d time.Duration) Option {
	return func(s *Store) error {
		if d < 0 {
			return invalidConfig("WithPurgeInterval(%v): must not be negative", d)
		}
		s.purgeIv = d
		return nil
	}
}

// WithoutSchemaCreation skips the CREATE TABLE IF NOT EXISTS that New runs
// by default, for databases migrated with Schema ahead of time.
func WithoutSchemaCreation() Option {
	return func(s *Store) error { s.create = false; return nil }
}

// New returns a store in db, creating its table if it does not exist.
func New(ctx context.Context, db *sql.DB, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, invalidConfig("New: nil *sql.DB")
	}
	s := &Store{db: db, table: DefaultTable, ttl: dedupe.DefaultTTL, now: time.Now, purgeIv: DefaultPurgeInterval, create: true}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.dialect == Detect {
		d, err := detect(db)
		if err != nil {
			return nil, err
		}
		s.dialect = d
	}
	s.buildQueries()
	s.lastPurge.Store(s.nowMicros())
	if s.create {
		if err := s.createSchema(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func detect(db *sql.DB) (Dialect, error) {
	if d, ok := sqldialect.Of(db); ok {
		return d, nil
	}
	return Detect, invalidConfig("cannot tell the SQL dialect of driver %T: pass WithDialect(PostgreSQL) or WithDialect(SQLite)", db.Driver())
}

func invalidConfig(format string, args ...any) error {
	return fmt.Errorf("sqlstore: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// Dialect returns the dialect in use (detected or configured).
func (s *Store) Dialect() Dialect { return s.dialect }

func (s *Store) buildQueries() {
	t := s.table
	q := func(sql string) string {
		sql = strings.ReplaceAll(sql, "{t}", t)
		if s.dialect == SQLite {
			sql = strings.ReplaceAll(sql, "$", "?")
		}
		return sql
	}
	// A free key is inserted; a key whose claim expired, or whose
	// processed mark is older than the TTL, is taken over; otherwise the
	// WHERE is false and nothing is returned.
	s.qClaim = q(`INSERT INTO {t} AS d (msg_key, token, lease_until, processed_at) VALUES ($1, $2, $3, NULL)
ON CONFLICT (msg_key) DO UPDATE SET token = excluded.token, lease_until = excluded.lease_until, processed_at = NULL
WHERE (d.processed_at IS NULL AND d.lease_until <= $4) OR (d.processed_at IS NOT NULL AND d.processed_at <= $5)
RETURNING token`)
	s.qStatus = q(`SELECT processed_at, lease_until FROM {t} WHERE msg_key = $1`)
	s.qComplete = q(`INSERT INTO {t} AS d (msg_key, token, lease_until, processed_at) VALUES ($1, 0, 0, $2)
ON CONFLICT (msg_key) DO UPDATE SET token = 0, processed_at = excluded.processed_at
WHERE d.processed_at IS NULL OR d.processed_at <= $3`)
	s.qRelease = q(`DELETE FROM {t} WHERE msg_key = $1 AND token = $2 AND processed_at IS NULL`)
	s.qExtend = q(`UPDATE {t} SET lease_until = $3 WHERE msg_key = $1 AND token = $2 AND processed_at IS NULL`)
	s.qPurgeDone = q(`DELETE FROM {t} WHERE processed_at <= $1`)
	s.qPurgeAbandoned = q(`DELETE FROM {t} WHERE processed_at IS NULL AND lease_until <= $1`)
}

// ddl returns the schema statements for the configured table.
func (s *Store) ddl() []string {
	idx := strings.ReplaceAll(s.table, ".", "_") + "_processed_at"
	if i := strings.IndexByte(s.table, '.'); i >= 0 && s.dialect == PostgreSQL {
		// PostgreSQL puts an index in its table's schema; the name
		// must not be qualified.
		idx = s.table[i+1:] + "_processed_at"
	}
	create := strings.Replace(strings.SplitN(Schema, ";\n", 2)[0], DefaultTable, s.table, 1)
	onIdx := "CREATE INDEX IF NOT EXISTS " + idx + " ON " + s.table + " (processed_at)"
	if i := strings.IndexByte(s.table, '.'); i >= 0 && s.dialect == SQLite {
		// SQLite qualifies the index name, not the table.
		onIdx = "CREATE INDEX IF NOT EXISTS " + s.table[:i] + "." + s.table[i+1:] + "_processed_at ON " + s.table[i+1:] + " (processed_at)"
	}
	return []string{create, onIdx}
}

func (s *Store) createSchema(ctx context.Context) error {
	for _, stmt := range s.ddl() {
		_, err := s.db.ExecContext(ctx, stmt)
		if err != nil && s.dialect == PostgreSQL && ctx.Err() == nil {
			// Concurrent CREATE ... IF NOT EXISTS from several
			// instances can fail on PostgreSQL's catalog; the
			// second attempt sees the table.
			_, err = s.db.ExecContext(ctx, stmt)
		}
		if err != nil {
			return s.wrap("create schema", "", err)
		}
	}
	return nil
}

func (s *Store) nowMicros() int64 { return s.now().UnixMicro() }

func (s *Store) wrap(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if key == "" {
		return fmt.Errorf("sqlstore: %s on %s: %w", op, s.table, err)
	}
	return fmt.Errorf("sqlstore: %s %q on %s: %w", op, key, s.table, err)
}

func newToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// Claim implements dedupe.Store.
func (s *Store) Claim(ctx context.Context, key string, lease time.Duration) (dedupe.ClaimResult, error) {
	if key == "" {
		return dedupe.ClaimResult{}, fmt.Errorf("%w: empty key", dedupe.ErrInvalidKey)
	}
	if lease <= 0 {
		return dedupe.ClaimResult{}, fmt.Errorf("sqlstore: claim %q: lease %v must be positive", key, lease)
	}
	if err := ctx.Err(); err != nil {
		return dedupe.ClaimResult{}, err
	}
	s.maybePurge(ctx)
	// The loop only repeats when the row changed between the claim and
	// the status read (released, or its lease just ended).
	for attempt := 0; ; attempt++ {
		now := s.nowMicros()
		token := newToken()
		var got int64
		err := s.db.QueryRowContext(ctx, s.qClaim, key, token, now+lease.Microseconds(), now, now-s.ttl.Microseconds()).Scan(&got)
		if err == nil {
			if got != token {
				return dedupe.ClaimResult{}, s.wrap("claim", key, fmt.Errorf("returned token %d, sent %d", got, token))
			}
			return dedupe.ClaimResult{Status: dedupe.Claimed, Token: dedupe.Token(token)}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return dedupe.ClaimResult{}, s.wrap("claim", key, err)
		}
		var processedAt sql.NullInt64
		var leaseUntil int64
		err = s.db.QueryRowContext(ctx, s.qStatus, key).Scan(&processedAt, &leaseUntil)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Released meanwhile: claim again.
		case err != nil:
			return dedupe.ClaimResult{}, s.wrap("claim status", key, err)
		case processedAt.Valid:
			return dedupe.ClaimResult{Status: dedupe.Processed}, nil
		default:
			if leaseUntil > now || attempt >= 3 {
				return dedupe.ClaimResult{Status: dedupe.InProgress}, nil
			}
		}
	}
}

// Extend implements dedupe.Store.
func (s *Store) Extend(ctx context.Context, key string, token dedupe.Token, lease time.Duration) error {
	if lease <= 0 {
		return fmt.Errorf("sqlstore: extend %q: lease %v must be positive", key, lease)
	}
	res, err := s.db.ExecContext(ctx, s.qExtend, key, int64(token), s.nowMicros()+lease.Microseconds())
	if err != nil {
		return s.wrap("extend", key, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return s.wrap("extend", key, err)
	} else if n == 0 {
		return dedupe.ErrLeaseLost
	}
	return nil
}

// Complete implements dedupe.Store.
func (s *Store) Complete(ctx context.Context, key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", dedupe.ErrInvalidKey)
	}
	_, err := s.complete(ctx, s.db, key)
	return err
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) complete(ctx context.Context, db execer, key string) (bool, error) {
	now := s.nowMicros()
	res, err := db.ExecContext(ctx, s.qComplete, key, now, now-s.ttl.Microseconds())
	if err != nil {
		return false, s.wrap("complete", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, s.wrap("complete", key, err)
	}
	return n > 0, nil
}

// MarkProcessedTx marks key processed inside the caller's transaction, so
// the business write and the processed mark commit (or roll back)
// together: the idempotent-consumer table of the classic pattern. Call it
// from a handler wrapped by dedupe.New, before committing tx, with the
// handler's ctx and an empty key: the key is then the one the middleware
// claimed (dedupe.KeyFromContext), whatever dedupe.WithKey computes, so the
// mark cannot miss the claimed row. A non-empty key is used as given. An
// empty key with a ctx that does not come from the middleware is an error
// wrapping dedupe.ErrInvalidKey.
//
// It returns dedupe.ErrAlreadyProcessed when the key is already marked:
// another delivery committed the same work first (possible only when a
// lease ran out under a hung handler). Roll back and return that error (or
// nil): the middleware settles the message without running it again.
//
// tx must belong to the store's database. On PostgreSQL the mark locks
// the key's row until tx ends, so a concurrent duplicate waits for the
// outcome instead of running.
func (s *Store) MarkProcessedTx(ctx context.Context, tx *sql.Tx, key string) error {
	if ctx == nil {
		return fmt.Errorf("sqlstore: MarkProcessedTx %q: %w: nil context", key, message.ErrInvalidConfig)
	}
	if tx == nil {
		return fmt.Errorf("sqlstore: MarkProcessedTx %q: %w: nil *sql.Tx", key, message.ErrInvalidConfig)
	}
	if key == "" {
		k, ok := dedupe.KeyFromContext(ctx)
		if !ok {
			return fmt.Errorf("%w: empty key, and ctx is not a handler context of the dedupe middleware (pass the handler's ctx, or the key)", dedupe.ErrInvalidKey)
		}
		key = k
	}
	marked, err := s.complete(ctx, tx, key)
	if err != nil {
		return err
	}
	if !marked {
		return fmt.Errorf("sqlstore: key %q: %w", key, dedupe.ErrAlreadyProcessed)
	}
	return nil
}

// Release implements dedupe.Store.
func (s *Store) Release(ctx context.Context, key string, token dedupe.Token) error {
	if _, err := s.db.ExecContext(ctx, s.qRelease, key, int64(token)); err != nil {
		return s.wrap("release", key, err)
	}
	return nil
}

// Purge deletes keys processed longer than the TTL ago and claims whose
// lease ended longer than the TTL ago, and returns how many rows it
// deleted. Claim calls it lazily (WithPurgeInterval); call it yourself
// when that is off.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	cutoff := s.nowMicros() - s.ttl.Microseconds()
	var total int64
	for _, q := range []string{s.qPurgeDone, s.qPurgeAbandoned} {
		res, err := s.db.ExecContext(ctx, q, cutoff)
		if err != nil {
			return total, s.wrap("purge", "", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.wrap("purge", "", err)
		}
		total += n
	}
	return total, nil
}

// maybePurge runs Purge when the purge interval has passed since the last
// one; one caller at a time wins the slot. A failed purge is retried at
// the next interval: it never fails the claim.
func (s *Store) maybePurge(ctx context.Context) {
	if s.purgeIv <= 0 {
		return
	}
	last := s.lastPurge.Load()
	now := s.nowMicros()
	if now-last < s.purgeIv.Microseconds() || !s.lastPurge.CompareAndSwap(last, now) {
		return
	}
	_, _ = s.Purge(ctx)
}
