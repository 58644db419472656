// Command idempotent-consumer shows the idempotent-consumer pattern with a
// SQL dedupe store: the business write and the "processed" mark commit in
// one database transaction, so a message is applied exactly once even
// though the broker delivers it at least once.
//
//	go run ./examples/idempotent-consumer [-broker kafka://127.0.0.1:9092 | amqp://guest:guest@127.0.0.1:5672/]
//
// A wallet service credits deposits to accounts in a SQLite database (a
// file in a temporary directory; PostgreSQL works the same through
// sqlstore). The producer is at-least-once too: it sends every deposit
// twice. And the first attempt at d-3 "crashes" after writing the ledger row
// but before committing: the transaction rolls back, the dedupe claim is
// released, and the redelivery applies it once.
//
// The handler is wrapped by dedupe.New(store); inside, it writes the
// ledger row and calls store.MarkProcessedTx(ctx, tx, msg.ID) before
// tx.Commit(). The mark is in the same table the middleware checks, so a
// duplicate delivery is skipped before the handler runs, and a crash
// anywhere before the commit leaves neither the row nor the mark behind.
// The last line is the result, checked against the database:
//
//	result: deliveries=11 credited=5 duplicates-skipped=5 rolled-back=1 ledger-rows=5 balance=$92.50 expected=$92.50
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/message"
)

type deposit struct {
	id      string
	account string
	cents   int64
}

var deposits = []deposit{
	{"d-1", "acct-1", 1000},
	{"d-2", "acct-2", 2550},
	{"d-3", "acct-1", 4000},
	{"d-4", "acct-3", 700},
	{"d-5", "acct-2", 1000},
}

func main() { broker.Main("idempotent-consumer", run) }

func run(ctx context.Context, brokerURL string) error {

	// The service's own database: the ledger and the dedupe table live
	// together, so one transaction covers both.
	dir, err := os.MkdirTemp("", "ferry-idempotent-consumer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "wallet.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE ledger (deposit_id TEXT PRIMARY KEY, account TEXT NOT NULL, cents INTEGER NOT NULL)`); err != nil {
		return err
	}
	store, err := sqlstore.New(ctx, db) // creates its table, ferry_processed_messages
	if err != nil {
		return err
	}
	idempotent, err := dedupe.New(store) // key: msg.ID
	if err != nil {
		return err
	}

	b, err := broker.Open(ctx, brokerURL)
	if err != nil {
		return err
	}
	defer b.Close()
	topic := b.Topic("deposits")
	fmt.Printf("idempotent-consumer: %s broker, topic %s, SQLite database %s\n", b.Kind, topic, path)
	if err := b.Prepare(ctx, topic, "wallet"); err != nil {
		return err
	}

	var (
		mu                              sync.Mutex
		delivered, credited, rolledBack int
		settled                         = map[string]int{}
		allSettled                      = make(chan struct{})
		amounts                         = map[string]deposit{}
	)
	for _, d := range deposits {
		amounts[d.id] = d
	}

	// credit is the business handler: one transaction for the ledger row
	// and the processed mark.
	credit := func(ctx context.Context, msg *message.Message) error {
		d := amounts[msg.ID]
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // no-op after Commit
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger (deposit_id, account, cents) VALUES (?, ?, ?)`, d.id, d.account, d.cents); err != nil {
			return err
		}
		if err := store.MarkProcessedTx(ctx, tx, msg.ID); err != nil {
			return err // dedupe.ErrAlreadyProcessed: another delivery won; the middleware settles this one
		}
		if d.id == "d-3" && msg.Delivery.Attempt == 1 {
			mu.Lock()
			rolledBack++
			mu.Unlock()
			fmt.Printf("wallet  %s: crashed after the ledger write, before commit: rolled back, will be redelivered\n", d.id)
			return errors.New("simulated crash before commit")
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		mu.Lock()
		credited++
		mu.Unlock()
		fmt.Printf("wallet  credited %s to %s: +%s\n", d.id, d.account, dollars(d.cents))
		return nil
	}

	// count is the outermost middleware: it sees every delivery, including
	// the duplicates dedupe skips, and tells run when each published
	// message has been settled once.
	count := func(next message.Handler) message.Handler {
		return func(ctx context.Context, msg *message.Message) error {
			err := next(ctx, msg)
			mu.Lock()
			defer mu.Unlock()
			delivered++
			if err == nil {
				settled[msg.ID]++
				if total(settled) == 2*len(deposits) {
					close(allSettled)
				}
			}
			return err
		}
	}

	sub, err := b.Subscriber("wallet", 4)
	if err != nil {
		return err
	}
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	errc := make(chan error, 1)
	go func() { errc <- sub.Subscribe(subCtx, topic, message.Chain(credit, count, idempotent)) }()

	// An at-least-once producer: every deposit is sent twice, same ID.
	for _, d := range deposits {
		for range 2 {
			msg := &message.Message{ID: d.id, Key: d.account, Payload: []byte(dollars(d.cents))}
			if err := b.Publisher().Publish(ctx, topic, msg); err != nil {
				return err
			}
		}
	}

	select {
	case <-allSettled:
	case err := <-errc:
		return fmt.Errorf("subscriber stopped: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the deposits to settle: %w", context.Cause(ctx))
	}
	stopSub()
	if err := <-errc; err != nil {
		return err
	}

	// The evidence, from the database.
	var rows int
	var balance int64
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*), COALESCE(SUM(cents), 0) FROM ledger`).Scan(&rows, &balance); err != nil {
		return err
	}
	var want int64
	for _, d := range deposits {
		want += d.cents
	}
	mu.Lock()
	defer mu.Unlock()
	skipped := delivered - credited - rolledBack
	fmt.Printf("result: deliveries=%d credited=%d duplicates-skipped=%d rolled-back=%d ledger-rows=%d balance=%s expected=%s\n",
		delivered, credited, skipped, rolledBack, rows, dollars(balance), dollars(want))
	if rows != len(deposits) || balance != want {
		return fmt.Errorf("ledger has %d rows and %s, want %d rows and %s", rows, dollars(balance), len(deposits), dollars(want))
	}
	return nil
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func dollars(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }
