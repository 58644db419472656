package outbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // also the database/sql driver "pgx"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m,
		// database/sql's connection opener ends with DB.Close; the
		// shared test databases stay open for the whole run.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		// The shared PostgreSQL pool's idle-time cleaner, likewise.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionCleaner"),
	)
}

// wait bounds every wait for an outcome: shorter in a mutant child
// process, where the waits are expected to run out.
var wait = func() time.Duration {
	if os.Getenv(outbox.MutantEnv) != "" {
		return 10 * time.Second
	}
	return 60 * time.Second
}()

func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
}

func openSQLite(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// pgAppName is the application_name of this process's PostgreSQL
// sessions.
var pgAppName = fmt.Sprintf("ferry_outbox_test_%d", os.Getpid())

var (
	pgOnce sync.Once
	pgDB   *sql.DB
	pgErr  error
)

func openPostgres(t testing.TB) *sql.DB {
	t.Helper()
	dsn := testenv.NeedPostgres(t)
	pgOnce.Do(func() {
		var cfg *pgx.ConnConfig
		cfg, pgErr = pgx.ParseConfig(dsn)
		if pgErr != nil {
			return
		}
		// Names this process's sessions, for the benchmarks' CPU
		// figures (pg_stat_activity).
		cfg.RuntimeParams["application_name"] = pgAppName
		pgDB = stdlib.OpenDB(*cfg)
		pgDB.SetMaxOpenConns(40)
		// Room for every relay worker's connection between batches:
		// with database/sql's default of 2 idle connections the pool
		// closes and reopens them (see the package doc).
		pgDB.SetMaxIdleConns(40)
		// ... but not for long: other packages' tests share the
		// server's connection limit.
		pgDB.SetConnMaxIdleTime(5 * time.Second)
	})
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pgDB
}

type backend struct {
	name string
	open func(testing.TB) *sql.DB
}

var backends = []backend{{"SQLite", openSQLite}, {"PostgreSQL", openPostgres}}

// uniqueTable returns an outbox table name no concurrent test uses, and
// drops its tables when t ends.
func uniqueTable(t testing.TB, db *sql.DB) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("ob_test_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))
	t.Cleanup(func() {
		for _, suffix := range []string{"", "_dead", "_meta"} {
			if _, err := db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+name+suffix); err != nil {
				t.Errorf("drop %s%s: %v", name, suffix, err)
			}
		}
	})
	return name
}

func newOutbox(t testing.TB, db *sql.DB, opts ...outbox.Option) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.New(context.Background(), db, append([]outbox.Option{outbox.WithTable(uniqueTable(t, db))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// write writes msgs to topic in one committed transaction.
func write(t testing.TB, db *sql.DB, ob *outbox.Outbox, topic string, msgs ...*message.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := ob.Write(ctx, tx, topic, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// startRelay runs r until the test ends and checks that Run returns nil.
func startRelay(t testing.TB, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newRelay(t testing.TB, ob *outbox.Outbox, pub message.Publisher, opts ...outbox.RelayOption) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(ob, pub, append([]outbox.RelayOption{
		outbox.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		outbox.WithRebalanceInterval(50 * time.Millisecond),
		outbox.WithPollInterval(20 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// published is one message as the recorder saw it.
type published struct {
	topic string
	msg   *message.Message
	by    string // the recorder's name
}

// recorder is a message.Publisher that records what it publishes, in
// order, and fails calls as told.
type recorder struct {
	name string
	log  *pubLog
	// fail decides the error of a message (nil: published).
	fail func(topic string, m *message.Message) error
	// callFail, when it returns an error, fails the whole call.
	callFail func() error
	// checkCall, when it returns an error, refuses the whole call, as
	// the adapters' checks of a call's messages do.
	checkCall func(msgs []*message.Message) error
	// streamFailures makes a message's failure fail the later messages
	// of its key in the call, as a Kafka partition or AMQP channel does.
	streamFailures bool
}

// pubLog is the shared, ordered log of several recorders.
type pubLog struct {
	mu      sync.Mutex
	all     []published
	changed chan struct{}
}

func newLog() *pubLog { return &pubLog{changed: make(chan struct{}, 1)} }

func (r *recorder) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if r.callFail != nil {
		if err := r.callFail(); err != nil {
			return err
		}
	}
	if r.checkCall != nil {
		if err := r.checkCall(msgs); err != nil {
			return err
		}
	}
	var pe message.PublishError
	r.log.mu.Lock()
	failedKey := map[string]error{}
	for i, m := range msgs {
		if err, ok := failedKey[m.Key]; ok && r.streamFailures {
			pe.Failed = append(pe.Failed, message.FailedMessage{Index: i, Message: m, Err: err})
			continue
		}
		if r.fail != nil {
			if err := r.fail(topic, m); err != nil {
				pe.Failed = append(pe.Failed, message.FailedMessage{Index: i, Message: m, Err: err})
				failedKey[m.Key] = err
				continue
			}
		}
		r.log.all = append(r.log.all, published{topic: topic, msg: m.Clone(), by: r.name})
	}
	r.log.mu.Unlock()
	select {
	case r.log.changed <- struct{}{}:
	default:
	}
	if len(pe.Failed) > 0 {
		pe.Topic, pe.Total = topic, len(msgs)
		return &pe
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func (l *pubLog) snapshot() []published {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// waitFor waits until cond holds for the log, failing with what was seen.
func (l *pubLog) waitFor(t testing.TB, what string, cond func([]published) bool) []published {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		got := l.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-l.changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; published %d messages: %s", wait, what, len(got), describe(got))
		case <-time.After(50 * time.Millisecond): // polling the database side too
		}
	}
}

// waitIDs waits until every ID was published at least once.
func (l *pubLog) waitIDs(t testing.TB, ids []string) []published {
	t.Helper()
	return l.waitFor(t, fmt.Sprintf("%d IDs", len(ids)), func(got []published) bool {
		seen := map[string]bool{}
		for _, p := range got {
			seen[p.msg.ID] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	})
}

func describe(ps []published) string {
	var b strings.Builder
	for i, p := range ps {
		if i == 20 {
			fmt.Fprintf(&b, " ... and %d more", len(ps)-i)
			break
		}
		fmt.Fprintf(&b, " %s/%s(%s)", p.topic, p.msg.Key, p.msg.Payload)
	}
	return b.String()
}

// checkOrder checks that, per key, the first publication of each message
// follows the order of the payload numbers "key:n", and returns the
// number of duplicates.
func checkOrder(t testing.TB, ps []published) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{}
	for _, p := range ps {
		if seen[p.msg.ID] {
			dups++
			continue
		}
		seen[p.msg.ID] = true
		var key string
		var n int
		if _, err := fmt.Sscanf(strings.Replace(string(p.msg.Payload), ":", " ", 1), "%s %d", &key, &n); err != nil {
			t.Fatalf("payload %q: %v", p.msg.Payload, err)
		}
		if prev, ok := last[key]; ok && n <= prev {
			t.Errorf("key %s: message %d published after %d", key, n, prev)
		}
		last[key] = n
	}
	return dups
}

// numbered returns n messages of key k with payloads "k:start".."k:start+n-1".
func numbered(k string, start, n int) []*message.Message {
	out := make([]*message.Message, n)
	for i := range out {
		out[i] = &message.Message{Key: k, Payload: fmt.Appendf(nil, "%s:%d", k, start+i)}
	}
	return out
}

func ids(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

var errTransient = errors.New("broker unavailable (test)")
