package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/message"
)

// TestMarkProcessedTxKeyFromContext: with dedupe.WithKey set, a handler
// used to have to recompute the key for MarkProcessedTx; a wrong one
// marked another row and lost the atomicity silently. An empty key now
// means the middleware's key, taken from the handler's ctx.
func TestMarkProcessedTxKeyFromContext(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			s := newStore(t, db)
			dd, err := dedupe.New(s, dedupe.WithKey(dedupe.KeyByHeader("idem")))
			if err != nil {
				t.Fatal(err)
			}
			var runs int
			var gotKey string
			h := message.Chain(func(ctx context.Context, m *message.Message) error {
				runs++
				gotKey, _ = dedupe.KeyFromContext(ctx)
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer func() { _ = tx.Rollback() }()
				if err := s.MarkProcessedTx(ctx, tx, ""); err != nil {
					return err
				}
				return tx.Commit()
			}, dd)
			m := func() *message.Message {
				return &message.Message{ID: "id-1", Headers: map[string]string{"idem": "order-7"}}
			}
			if err := h(ctx, m()); err != nil {
				t.Fatalf("first delivery: %v", err)
			}
			if gotKey != "order-7" {
				t.Fatalf("KeyFromContext = %q, want the WithKey key %q", gotKey, "order-7")
			}
			// The mark is on the claimed key: a redelivery is skipped.
			if err := h(ctx, m()); err != nil {
				t.Fatalf("second delivery: %v", err)
			}
			if runs != 1 {
				t.Fatalf("handler ran %d times, want 1", runs)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.Table()).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("%d rows in %s, want 1 (the claimed key only)", n, s.Table())
			}
		})
	}
}

// TestNilSweep: nil and empty arguments get errors, not panics. A nil
// context is a programmer error (Go convention), but MarkProcessedTx
// reports it rather than panicking.
func TestNilSweep(t *testing.T) {
	ctx := context.Background()
	noPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s panicked: %v", name, r)
			}
		}()
		f()
	}
	noPanic("New(nil db)", func() {
		if _, err := sqlstore.New(ctx, nil); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("New(nil) = %v, want ErrInvalidConfig", err)
		}
	})
	var typed *sql.DB
	noPanic("New(typed nil db)", func() {
		if _, err := sqlstore.New(ctx, typed); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("New(typed nil) = %v, want ErrInvalidConfig", err)
		}
	})
	db := openSQLite(t)
	noPanic("New(nil option)", func() {
		if _, err := sqlstore.New(ctx, db, nil, sqlstore.WithTable(uniqueTable(t, db))); err != nil {
			t.Errorf("New(nil option) = %v, want it skipped", err)
		}
	})
	noPanic("WithClock(nil)", func() {
		if _, err := sqlstore.New(ctx, db, sqlstore.WithClock(nil)); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("WithClock(nil) = %v, want ErrInvalidConfig", err)
		}
	})
	s := newStore(t, db)
	noPanic("MarkProcessedTx(nil tx)", func() {
		if err := s.MarkProcessedTx(ctx, nil, "k"); err == nil {
			t.Error("MarkProcessedTx(nil tx) = nil")
		}
	})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	noPanic("MarkProcessedTx(empty key, no middleware ctx)", func() {
		if err := s.MarkProcessedTx(ctx, tx, ""); !errors.Is(err, dedupe.ErrInvalidKey) {
			t.Errorf("MarkProcessedTx(empty key) = %v, want ErrInvalidKey", err)
		}
	})
	noPanic("MarkProcessedTx(nil ctx)", func() {
		var nilCtx context.Context // a nil context on purpose
		if err := s.MarkProcessedTx(nilCtx, tx, ""); err == nil {
			t.Error("MarkProcessedTx(nil ctx) = nil")
		}
	})
	for name, f := range map[string]func() error{
		"Claim(empty key)":    func() error { _, err := s.Claim(ctx, "", 1); return err },
		"Complete(empty key)": func() error { return s.Complete(ctx, "") },
	} {
		noPanic(name, func() {
			if err := f(); err == nil {
				t.Errorf("%s = nil", name)
			}
		})
	}
}
