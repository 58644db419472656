package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/message"
)

// The business write and the processed mark commit in one transaction, so
// a duplicate can neither repeat the write nor be lost to a crash between
// the write and the mark.
func ExampleStore_MarkProcessedTx() {
	dir, err := os.MkdirTemp("", "ferry-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE payments (order_id TEXT PRIMARY KEY, amount INTEGER)`); err != nil {
		panic(err)
	}

	store, err := sqlstore.New(ctx, db) // creates ferry_processed_messages
	if err != nil {
		panic(err)
	}
	dd, err := dedupe.New(store)
	if err != nil {
		panic(err)
	}
	handle := func(ctx context.Context, m *message.Message) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments (order_id, amount) VALUES (?, ?)`, m.ID, 10); err != nil {
			return err
		}
		// An empty key: the one the middleware claimed, from ctx
		// (dedupe.KeyFromContext), whatever dedupe.WithKey computes.
		if err := store.MarkProcessedTx(ctx, tx, ""); err != nil {
			return err
		}
		return tx.Commit()
	}
	h := message.Chain(handle, dd)

	// The subscriber would call h; here we deliver by hand, twice.
	for range 2 {
		if err := h(ctx, &message.Message{ID: "order-1"}); err != nil {
			panic(err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments`).Scan(&n); err != nil {
		panic(err)
	}
	fmt.Println("payments:", n)
	// Output:
	// payments: 1
}
