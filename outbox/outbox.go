package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/sqldialect"
	"github.com/ferrymsg/ferry/message"
)

// DefaultTable is the default name of the outbox table. The dead-letter
// table is named after it with the suffix "_dead", the metadata table with
// "_meta".
const DefaultTable = "ferry_outbox"

// DefaultShards is the default number of shards (see WithShards).
const DefaultShards = 8

// DefaultMaxMessageSize is the default limit of WithMaxMessageSize: the
// payload, key and headers of one message, in bytes. It is below the
// Kafka producer's default record batch limit (1,000,012 bytes) and far
// below RabbitMQ's.
const DefaultMaxMessageSize = 1_000_000

// MaxTopicLen is the longest topic name Write accepts by default (the AMQP
// limit of an exchange name; Kafka allows 249, see WithTopicCheck).
const MaxTopicLen = 255

// Dialect is the SQL dialect of the database (the same type as
// outbox.Dialect and sqlstore.Dialect: either package's constants work
// with the other).
type Dialect = sqldialect.Dialect

// Dialects.
const (
	// Detect picks the dialect from the database/sql driver's type, as
	// the dedupe SQL store does: drivers whose type name mentions sqlite
	// are SQLite; pgx's stdlib, lib/pq and others mentioning postgres or
	// pgx are PostgreSQL.
	Detect = sqldialect.Detect
	// PostgreSQL (13 or later): several relays may share one table.
	PostgreSQL = sqldialect.PostgreSQL
	// SQLite (3.35 or later); modernc.org/sqlite works without cgo. One
	// relay per database.
	SQLite = sqldialect.SQLite
)

// Outbox is the outbox table in one database: Write adds messages to it
// in the caller's transaction, a Relay (NewRelay) publishes them. It is
// safe for concurrent use. It does not own the *sql.DB: close that
// yourself.
type Outbox struct {
	db        *sql.DB
	dialect   Dialect
	table     string
	shards    int
	shardsSet bool
	maxSize   int
	topicChk  func(string) error
	notify    bool
	retention time.Duration
	create    bool
	now       func() time.Time

	channel string // NOTIFY channel
	classID int32  // advisory lock class (PostgreSQL)
}

// Option configures an Outbox.
type Option func(*Outbox) error

// WithTable sets the outbox table's name: letters, digits and underscores,
// not starting with a digit, at most 57 characters (the dead-letter table
// adds "_dead"), optionally qualified by a schema ("schema.table").
// Default DefaultTable ("ferry_outbox").
func WithTable(name string) Option {
	return func(o *Outbox) error {
		if err := validTable(name); err != nil {
			return err
		}
		o.table = name
		return nil
	}
}

// WithDialect sets the SQL dialect. Default Detect.
func WithDialect(d Dialect) Option {
	return func(o *Outbox) error {
		if d > SQLite {
			return invalidConfig("WithDialect(%v): unknown dialect", d)
		}
		o.dialect = d
		return nil
	}
}

// WithShards sets the number of shards, 1 to 1024. A message's shard is a
// hash of its key (of its ID when the key is empty), written with the
// row; one relay at a time owns a shard and publishes its rows in order,
// so this is the relays' parallelism. The count is stored in the
// metadata table when the schema is created, and New fails when an
// explicit WithShards disagrees with the stored count, so writers and
// relays cannot map keys differently. Default: the stored count, or
// DefaultShards (8) for a new table.
func WithShards(n int) Option {
	return func(o *Outbox) error {
		if n < 1 || n > 1024 {
			return invalidConfig("WithShards(%d): must be 1 to 1024", n)
		}
		o.shards, o.shardsSet = n, true
		return nil
	}
}

// WithMaxMessageSize sets the largest message Write accepts: payload, key
// and header keys and values, in bytes. A larger one fails Write with
// message.ErrMessageTooLarge, before anything is written; a broker that
// rejects a smaller one anyway makes the relay move it to the dead table.
// Default DefaultMaxMessageSize (1,000,000).
func WithMaxMessageSize(n int) Option {
	return func(o *Outbox) error {
		if n < 1 {
			return invalidConfig("WithMaxMessageSize(%d): must be positive", n)
		}
		o.maxSize = n
		return nil
	}
}

// WithTopicCheck adds a check of topic names to Write, for the broker the
// relay publishes to: adapter.ValidateLogTopic for Kafka's rules, for
// example. Its error should wrap message.ErrInvalidTopic. Write always
// rejects empty topics, topics that are not valid UTF-8 or hold a NUL, and
// topics over MaxTopicLen (255) bytes. Default: no further check.
func WithTopicCheck(f func(topic string) error) Option {
	return func(o *Outbox) error {
		if f == nil {
			return invalidConfig("WithTopicCheck(nil)")
		}
		o.topicChk = f
		return nil
	}
}

// WithoutNotify stops Write from sending a NOTIFY on PostgreSQL. Relays
// then find new rows by polling only (WithPollInterval). NOTIFY makes a
// committed row reach the relay within milliseconds; it costs one lock on
// PostgreSQL's notification queue per committing transaction. Default:
// NOTIFY on (PostgreSQL); SQLite has none.
func WithoutNotify() Option {
	return func(o *Outbox) error { o.notify = false; return nil }
}

// WithRetention keeps published rows in the table, marked with their
// publish time, for d, after which a relay deletes them. Default 0:
// a row is deleted as soon as it is published.
func WithRetention(d time.Duration) Option {
	return func(o *Outbox) error {
		if d < 0 {
			return invalidConfig("WithRetention(%v): must not be negative", d)
		}
		o.retention = d
		return nil
	}
}

// WithoutSchemaCreation skips the CREATE TABLE IF NOT EXISTS statements
// New runs by default, for databases migrated ahead of time with the
// statements of Schema. The metadata row must exist then.
func WithoutSchemaCreation() Option {
	return func(o *Outbox) error { o.create = false; return nil }
}

// WithClock replaces time.Now, for tests: the times written with rows and
// dead letters, and retention. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *Outbox) error {
		if now == nil {
			return invalidConfig("WithClock(nil)")
		}
		o.now = now
		return nil
	}
}

// New returns the outbox in db, creating its tables if they do not exist
// (idempotent; safe to run from several processes at once).
func New(ctx context.Context, db *sql.DB, opts ...Option) (*Outbox, error) {
	if ctx == nil {
		return nil, invalidConfig("New: nil context")
	}
	if db == nil {
		return nil, invalidConfig("New: nil *sql.DB")
	}
	o := &Outbox{db: db, table: DefaultTable, shards: DefaultShards, maxSize: DefaultMaxMessageSize,
		notify: true, create: true, now: time.Now}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.dialect == Detect {
		d, err := detect(db)
		if err != nil {
			return nil, err
		}
		o.dialect = d
	}
	if o.dialect == SQLite {
		o.notify = false
	}
	h := fnv.New32a()
	h.Write([]byte(o.table))
	sum := h.Sum32()
	o.classID = int32(sum & 0x7fffffff)
	o.channel = "ferry_outbox_" + strconv.FormatUint(uint64(sum), 16)
	if o.create {
		if err := o.createSchema(ctx); err != nil {
			return nil, err
		}
	}
	var stored int
	err := db.QueryRowContext(ctx, o.q(`SELECT shards FROM {t}_meta WHERE id = 1`)).Scan(&stored)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("outbox: read the shard count from %s_meta (create the schema, or drop WithoutSchemaCreation): %w", o.table, err)
	}
	if o.shardsSet && stored != o.shards {
		return nil, invalidConfig("WithShards(%d): table %s was created with %d shards; all writers and relays must use the same count", o.shards, o.table, stored)
	}
	o.shards = stored
	return o, nil
}

func detect(db *sql.DB) (Dialect, error) {
	if d, ok := sqldialect.Of(db); ok {
		return d, nil
	}
	return Detect, invalidConfig("cannot tell the SQL dialect of driver %T: pass WithDialect(PostgreSQL) or WithDialect(SQLite)", db.Driver())
}

var pgParam = regexp.MustCompile(`\$([0-9]+)`)

// validTable checks a WithTable name; the table part leaves room for the
// _dead and _pending suffixes.
func validTable(name string) error {
	if err := sqldialect.CheckTable(name, 57); err != nil {
		return invalidConfig("%s", err)
	}
	return nil
}

func invalidConfig(format string, args ...any) error {
	return fmt.Errorf("outbox: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// Table returns the outbox table's name.
func (o *Outbox) Table() string { return o.table }

// DeadTable returns the dead-letter table's name (Table + "_dead").
func (o *Outbox) DeadTable() string { return o.table + "_dead" }

// Dialect returns the dialect in use (detected or configured).
func (o *Outbox) Dialect() Dialect { return o.dialect }

// Shards returns the shard count.
func (o *Outbox) Shards() int { return o.shards }

// q fills in the table name and, on SQLite, the placeholders.
func (o *Outbox) q(s string) string {
	s = strings.ReplaceAll(s, "{t}", o.table)
	if o.dialect == SQLite {
		// $N is a named parameter in SQLite; ?N is the numbered one.
		s = pgParam.ReplaceAllString(s, "?$1")
	}
	return s
}

// Schema returns the DDL that New runs for the given dialect, table name
// and shard count, for migrations (then pass WithoutSchemaCreation). The
// statements are separated by ";\n".
func Schema(d Dialect, table string, shards int) (string, error) {
	if d != PostgreSQL && d != SQLite {
		return "", invalidConfig("Schema: dialect must be PostgreSQL or SQLite, not %v", d)
	}
	if err := validTable(table); err != nil {
		return "", err
	}
	if shards < 1 || shards > 1024 {
		return "", invalidConfig("Schema: %d shards, must be 1 to 1024", shards)
	}
	o := &Outbox{dialect: d, table: table, shards: shards}
	return strings.Join(o.ddl(), ";\n") + ";", nil
}

// indexName returns the name of an index on the table with suffix, and
// the table name to use in ON: PostgreSQL puts an index in its table's
// schema (the name must not be qualified), SQLite qualifies the index
// name, not the table.
func (o *Outbox) indexName(suffix string) (index, on string) {
	schema, bare, qualified := strings.Cut(o.table, ".")
	if !qualified {
		return o.table + suffix, o.table
	}
	if o.dialect == PostgreSQL {
		return bare + suffix, o.table
	}
	return schema + "." + bare + suffix, bare
}

func (o *Outbox) ddl() []string {
	seq, blob := "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BYTEA"
	if o.dialect == SQLite {
		seq, blob = "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	}
	cols := `shard        INTEGER NOT NULL,
	topic        TEXT NOT NULL,
	msg_id       TEXT NOT NULL,
	msg_key      TEXT NOT NULL,
	payload      ` + blob + ` NOT NULL,
	headers      TEXT NOT NULL,
	msg_time     BIGINT NOT NULL,
	created_at   BIGINT NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0`
	pending, on := o.indexName("_pending")
	published, _ := o.indexName("_published")
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + o.table + ` (
	seq          ` + seq + `,
	` + cols + `,
	last_error   TEXT,
	published_at BIGINT
)`,
		`CREATE INDEX IF NOT EXISTS ` + pending + ` ON ` + on + ` (shard, seq) WHERE published_at IS NULL`,
		`CREATE INDEX IF NOT EXISTS ` + published + ` ON ` + on + ` (published_at) WHERE published_at IS NOT NULL`,
		`CREATE TABLE IF NOT EXISTS ` + o.table + `_dead (
	seq          BIGINT PRIMARY KEY,
	` + cols + `,
	error        TEXT NOT NULL,
	failed_at    BIGINT NOT NULL
)`,
		`CREATE TABLE IF NOT EXISTS ` + o.table + `_meta (
	id     INTEGER PRIMARY KEY,
	shards INTEGER NOT NULL
)`,
		`INSERT INTO ` + o.table + `_meta (id, shards) VALUES (1, ` + strconv.Itoa(o.shards) + `) ON CONFLICT (id) DO NOTHING`,
	}
}

// sqliteBusyWait bounds createSchema's retries of SQLITE_BUSY.
const sqliteBusyWait = 10 * time.Second

// sqliteBusy reports whether err is SQLite's SQLITE_BUSY ("database is
// locked"), in the words of modernc.org/sqlite and mattn/go-sqlite3 alike.
func sqliteBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked")
}

func (o *Outbox) createSchema(ctx context.Context) error {
	for _, stmt := range o.ddl() {
		_, err := o.db.ExecContext(ctx, stmt)
		if err != nil && o.dialect == PostgreSQL && ctx.Err() == nil {
			// Concurrent CREATE ... IF NOT EXISTS from several
			// instances can fail on PostgreSQL's catalog (unique
			// violation on pg_type); the second attempt sees the
			// table.
			_, err = o.db.ExecContext(ctx, stmt)
		}
		// Concurrent DDL on SQLite can fail with SQLITE_BUSY at once,
		// busy timeout or not (a connection's schema snapshot went
		// stale). Every statement is idempotent: try again, for at
		// most sqliteBusyWait.
		for wait, deadline := time.Millisecond, time.Now().Add(sqliteBusyWait); err != nil && o.dialect == SQLite && sqliteBusy(err) && time.Now().Before(deadline); wait = min(2*wait, 100*time.Millisecond) {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			_, err = o.db.ExecContext(ctx, stmt)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("outbox: create schema of %s: %w", o.table, err)
		}
	}
	return nil
}

// shardOf maps a message to its shard: FNV-1a of the key, or of the ID
// when the key is empty (no order to keep: spread over the shards).
func shardOf(m *message.Message, shards int) int {
	k := m.Key
	if k == "" {
		k = m.ID
	}
	h := fnv.New32a()
	h.Write([]byte(k))
	return int(h.Sum32() % uint32(shards))
}

// rowsPerInsert bounds one INSERT statement (8 parameters a row; the
// PostgreSQL protocol allows 65,535, SQLite 32,766).
const rowsPerInsert = 500

// Write adds msgs for topic to the outbox inside tx, the caller's
// transaction: they are published by a relay if and only if tx commits.
// Messages without an ID get one (message.NewIDs, as publishers assign
// them) and messages without a Time get time.Now, written into the given
// messages, so the caller can log or return the IDs; a relayed duplicate
// carries the same ID, which the dedupe middleware recognises. Messages of
// one key are published in the order of their Write calls (see the
// package doc).
//
// Write checks everything before it writes anything: a nil context or tx,
// a bad topic (empty, over MaxTopicLen bytes, not UTF-8, WithTopicCheck),
// a nil message or a text field (ID, key, header) that is not UTF-8 or
// holds a NUL (message.ErrInvalidMessage), or a message over
// WithMaxMessageSize (message.ErrMessageTooLarge) fail the call and leave
// tx as it was. A database error comes back wrapped (errors.As finds the
// driver's error); the caller should roll back tx then.
//
// tx must belong to the outbox's database. On PostgreSQL, Write also
// sends a NOTIFY (delivered at commit) unless WithoutNotify was given.
func (o *Outbox) Write(ctx context.Context, tx *sql.Tx, topic string, msgs ...*message.Message) error {
	if o == nil {
		return invalidConfig("Write on a nil *Outbox")
	}
	if ctx == nil {
		return invalidConfig("Write to %q: nil context", topic)
	}
	if tx == nil {
		return invalidConfig("Write to %q: nil *sql.Tx (write in the transaction of the business change)", topic)
	}
	if err := o.checkTopic(topic); err != nil {
		return err
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("outbox: write to %q: %w: message #%d of %d is nil", topic, message.ErrInvalidMessage, i, len(msgs))
		}
		if err := o.checkMessage(m); err != nil {
			return fmt.Errorf("outbox: write to %q: message #%d of %d (id %q): %w", topic, i, len(msgs), m.ID, err)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := adapter.Prepare(topic, msgs); err != nil {
		return fmt.Errorf("outbox: write to %q: %w", topic, err)
	}
	now := o.now().UnixMicro()
	for start := 0; start < len(msgs); start += rowsPerInsert {
		chunk := msgs[start:min(start+rowsPerInsert, len(msgs))]
		stmt, args, err := o.insert(topic, chunk, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return fmt.Errorf("outbox: write %d message(s) to %q into %s: %w", len(chunk), topic, o.table, err)
		}
	}
	return nil
}

func (o *Outbox) insert(topic string, msgs []*message.Message, now int64) (string, []any, error) {
	var b strings.Builder
	b.WriteString("INSERT INTO " + o.table + " (shard, topic, msg_id, msg_key, payload, headers, msg_time, created_at) VALUES ")
	args := make([]any, 0, 8*len(msgs))
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(", ")
		}
		hdr, err := json.Marshal(m.Headers)
		if err != nil {
			return "", nil, fmt.Errorf("outbox: write to %q: %w: headers of message %q: %v", topic, message.ErrInvalidMessage, m.ID, err)
		}
		payload := m.Payload
		if payload == nil {
			payload = []byte{}
		}
		n := len(args)
		if o.dialect == SQLite {
			b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?)")
		} else {
			fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8)
		}
		args = append(args, shardOf(m, o.shards), topic, m.ID, m.Key, payload, string(hdr), m.Time.UnixMicro(), now)
	}
	stmt := b.String()
	if o.notify {
		// The NOTIFY is queued in the transaction and delivered at its
		// commit; its payload is the shard, so only that shard's
		// owner wakes up. Identical notifications of one transaction
		// are folded into one by PostgreSQL.
		stmt = "WITH ins AS (" + stmt + " RETURNING shard) SELECT pg_notify('" + o.channel +
			"', s::text) FROM (SELECT DISTINCT shard AS s FROM ins) d"
	}
	return stmt, args, nil
}

func (o *Outbox) checkTopic(topic string) error {
	if err := adapter.ValidateTopic(topic); err != nil {
		return fmt.Errorf("outbox: write: %w", err)
	}
	if len(topic) > MaxTopicLen {
		return fmt.Errorf("outbox: write: %w: topic name is %d bytes, at most %d", message.ErrInvalidTopic, len(topic), MaxTopicLen)
	}
	if !utf8.ValidString(topic) || strings.IndexByte(topic, 0) >= 0 {
		return fmt.Errorf("outbox: write: %w: topic name %q is not UTF-8 text without NUL", message.ErrInvalidTopic, topic)
	}
	if o.topicChk != nil {
		if err := o.topicChk(topic); err != nil {
			if !errors.Is(err, message.ErrInvalidTopic) {
				err = fmt.Errorf("%w: %w", message.ErrInvalidTopic, err)
			}
			return fmt.Errorf("outbox: write to %q: %w", topic, err)
		}
	}
	return nil
}

func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", message.ErrInvalidMessage, what, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s %q holds a NUL byte", message.ErrInvalidMessage, what, s)
	}
	return nil
}

func (o *Outbox) checkMessage(m *message.Message) error {
	if err := checkText("ID", m.ID); err != nil {
		return err
	}
	if err := checkText("key", m.Key); err != nil {
		return err
	}
	size := len(m.Payload) + len(m.Key)
	for k, v := range m.Headers {
		if k == "" {
			return fmt.Errorf("%w: empty header name", message.ErrInvalidMessage)
		}
		if err := checkText("header name", k); err != nil {
			return err
		}
		if err := checkText("value of header "+strconv.Quote(k), v); err != nil {
			return err
		}
		size += len(k) + len(v)
	}
	if size > o.maxSize {
		return fmt.Errorf("%w: %d bytes of payload, key and headers, the limit is %d (WithMaxMessageSize)", message.ErrMessageTooLarge, size, o.maxSize)
	}
	return nil
}
