package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// sqliteDSN is how SQLite should be opened for concurrent use: WAL, and a
// busy timeout so that writers queue instead of failing with SQLITE_BUSY.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
}

func openSQLite(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "dedupe.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var (
	pgOnce sync.Once
	pgDB   *sql.DB
	pgErr  error
)

func openPostgres(t testing.TB) *sql.DB {
	t.Helper()
	dsn := testenv.NeedPostgres(t)
	pgOnce.Do(func() {
		pgDB, pgErr = sql.Open("pgx", dsn)
		if pgErr == nil {
			pgDB.SetMaxOpenConns(16)
		}
	})
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pgDB
}

// uniqueTable returns a table name no concurrent test run uses, and drops
// the table when t ends.
func uniqueTable(t testing.TB, db *sql.DB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("ferry_dedupe_test_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

func newStore(t testing.TB, db *sql.DB, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	opts = append([]sqlstore.Option{sqlstore.WithTable(uniqueTable(t, db))}, opts...)
	s, err := sqlstore.New(context.Background(), db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type backend struct {
	name    string
	dialect sqlstore.Dialect
	open    func(testing.TB) *sql.DB
}

var backends = []backend{
	{"SQLite", sqlstore.SQLite, openSQLite},
	{"PostgreSQL", sqlstore.PostgreSQL, openPostgres},
}

func TestStoreContract(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			dedupetest.RunStoreTests(t, func(t *testing.T, cfg dedupetest.Config) dedupe.Store {
				return newStore(t, db, sqlstore.WithClock(cfg.Now), sqlstore.WithTTL(cfg.TTL))
			})
		})
	}
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)

			t.Run("dialect is detected from the driver", func(t *testing.T) {
				s := newStore(t, db)
				if s.Dialect() != b.dialect {
					t.Fatalf("Dialect() = %v, want %v", s.Dialect(), b.dialect)
				}
			})

			t.Run("MarkProcessedTx commits with the business write", func(t *testing.T) {
				s := newStore(t, db)
				biz := uniqueTable(t, db)
				if _, err := db.ExecContext(ctx, "CREATE TABLE "+biz+" (id TEXT PRIMARY KEY)"); err != nil {
					t.Fatal(err)
				}
				claim, err := s.Claim(ctx, "m1", time.Minute)
				if err != nil || claim.Status != dedupe.Claimed {
					t.Fatalf("Claim = %v, %v", claim.Status, err)
				}
				// Rolled back: neither the write nor the mark exists.
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO "+biz+" (id) VALUES ('m1')"); err != nil {
					t.Fatal(err)
				}
				if err := s.MarkProcessedTx(ctx, tx, "m1"); err != nil {
					t.Fatal(err)
				}
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
				if res, _ := s.Claim(ctx, "m1", time.Minute); res.Status != dedupe.InProgress {
					t.Fatalf("after rollback: %v, want still in progress (claimed)", res.Status)
				}
				// Committed: both exist.
				tx, err = db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO "+biz+" (id) VALUES ('m1')"); err != nil {
					t.Fatal(err)
				}
				if err := s.MarkProcessedTx(ctx, tx, "m1"); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if res, _ := s.Claim(ctx, "m1", time.Minute); res.Status != dedupe.Processed {
					t.Fatalf("after commit: %v, want processed", res.Status)
				}
				// A second mark reports the key as already processed.
				tx, err = db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				if err := s.MarkProcessedTx(ctx, tx, "m1"); !errors.Is(err, dedupe.ErrAlreadyProcessed) {
					t.Fatalf("second mark = %v, want ErrAlreadyProcessed", err)
				}
			})

			t.Run("middleware with the tx pattern writes once per ID", func(t *testing.T) {
				s := newStore(t, db)
				biz := uniqueTable(t, db)
				if _, err := db.ExecContext(ctx, "CREATE TABLE "+biz+" (id TEXT PRIMARY KEY, n INTEGER NOT NULL)"); err != nil {
					t.Fatal(err)
				}
				mw, err := dedupe.New(s)
				if err != nil {
					t.Fatal(err)
				}
				var runs atomic.Int32
				h := message.Chain(func(ctx context.Context, m *message.Message) error {
					runs.Add(1)
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					if _, err := tx.ExecContext(ctx, "INSERT INTO "+biz+" (id, n) VALUES ('"+m.ID+"', 1)"); err != nil {
						return err
					}
					if err := s.MarkProcessedTx(ctx, tx, m.ID); err != nil {
						return err
					}
					return tx.Commit()
				}, mw)
				for range 3 {
					if err := h(ctx, &message.Message{ID: "order-7"}); err != nil {
						t.Fatal(err)
					}
				}
				var n int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+biz).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 || runs.Load() != 1 {
					t.Fatalf("rows %d, runs %d; want 1 and 1", n, runs.Load())
				}
			})

			t.Run("purge deletes expired rows only", func(t *testing.T) {
				clk := dedupetest.NewClock(time.Unix(2e9, 0))
				s := newStore(t, db, sqlstore.WithClock(clk.Now), sqlstore.WithTTL(time.Hour), sqlstore.WithPurgeInterval(0))
				for _, k := range []string{"old1", "old2", "abandoned"} {
					if _, err := s.Claim(ctx, k, time.Minute); err != nil {
						t.Fatal(err)
					}
				}
				for _, k := range []string{"old1", "old2"} {
					if err := s.Complete(ctx, k); err != nil {
						t.Fatal(err)
					}
				}
				clk.Advance(30 * time.Minute)
				if _, err := s.Claim(ctx, "young", time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := s.Complete(ctx, "young"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Claim(ctx, "live", time.Hour*2); err != nil {
					t.Fatal(err)
				}
				clk.Advance(40 * time.Minute)
				n, err := s.Purge(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n != 3 {
					t.Fatalf("purged %d rows, want 3 (old1, old2, abandoned)", n)
				}
				if res, _ := s.Claim(ctx, "young", time.Minute); res.Status != dedupe.Processed {
					t.Fatalf("young = %v, want processed", res.Status)
				}
				if res, _ := s.Claim(ctx, "live", time.Minute); res.Status != dedupe.InProgress {
					t.Fatalf("live = %v, want in progress", res.Status)
				}
			})

			t.Run("claim purges lazily at the interval", func(t *testing.T) {
				clk := dedupetest.NewClock(time.Unix(2e9, 0))
				s := newStore(t, db, sqlstore.WithClock(clk.Now), sqlstore.WithTTL(time.Hour), sqlstore.WithPurgeInterval(time.Minute))
				if err := s.Complete(ctx, "old"); err != nil {
					t.Fatal(err)
				}
				clk.Advance(2 * time.Hour)
				if _, err := s.Claim(ctx, "other", time.Minute); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.Table()+" WHERE msg_key = 'old'").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Fatal("expired row not purged by a claim after the interval")
				}
			})

			t.Run("existing table is reused", func(t *testing.T) {
				table := uniqueTable(t, db)
				s1, err := sqlstore.New(ctx, db, sqlstore.WithTable(table))
				if err != nil {
					t.Fatal(err)
				}
				if err := s1.Complete(ctx, "k"); err != nil {
					t.Fatal(err)
				}
				s2, err := sqlstore.New(ctx, db, sqlstore.WithTable(table))
				if err != nil {
					t.Fatal(err)
				}
				if res, _ := s2.Claim(ctx, "k", time.Minute); res.Status != dedupe.Processed {
					t.Fatalf("second store sees %v, want processed", res.Status)
				}
			})

			t.Run("without schema creation a missing table is an error naming it", func(t *testing.T) {
				s, err := sqlstore.New(ctx, db, sqlstore.WithTable("ferry_no_such_table_x"), sqlstore.WithoutSchemaCreation())
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Claim(ctx, "k", time.Minute)
				if err == nil {
					t.Fatal("claim on a missing table: no error")
				}
				if want := "ferry_no_such_table_x"; !contains(err.Error(), want) {
					t.Fatalf("error %q does not name the table", err)
				}
			})
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

func TestOptions(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	bad := map[string]sqlstore.Option{
		"table with space": sqlstore.WithTable("a b"),
		"table with quote": sqlstore.WithTable(`x"; DROP TABLE y; --`),
		"empty table":      sqlstore.WithTable(""),
		"leading digit":    sqlstore.WithTable("1abc"),
		"two dots":         sqlstore.WithTable("a.b.c"),
		"too long":         sqlstore.WithTable("t" + fmt.Sprintf("%064d", 0)),
		"zero ttl":         sqlstore.WithTTL(0),
		"nil clock":        sqlstore.WithClock(nil),
		"negative purge":   sqlstore.WithPurgeInterval(-1),
		"unknown dialect":  sqlstore.WithDialect(sqlstore.Dialect(9)),
	}
	for name, o := range bad {
		if _, err := sqlstore.New(ctx, db, o); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := sqlstore.New(ctx, nil); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("nil db: err = %v, want ErrInvalidConfig", err)
	}
	s, err := sqlstore.New(ctx, db, sqlstore.WithTable("main.qualified_table"))
	if err != nil {
		t.Fatalf("schema-qualified table: %v", err)
	}
	if _, err := s.Claim(ctx, "k", time.Minute); err != nil {
		t.Fatal(err)
	}
	if s.Table() != "main.qualified_table" {
		t.Fatalf("Table() = %q", s.Table())
	}
}
