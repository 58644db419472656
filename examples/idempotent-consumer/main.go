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

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/runner"
)

// deposit is the event's payload, JSON on the wire (codec.JSON).
type deposit struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Cents   int64  `json:"cents"`
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
		mu                                       sync.Mutex
		delivered, settled, credited, rolledBack int
	)
	svc, err := runner.New(runner.WithSignals()) // broker.Main turns signals into ctx
	if err != nil {
		return err
	}

	// credit is the business handler: one transaction for the ledger row
	// and the processed mark.
	credit := func(ctx context.Context, d deposit, msg *message.Message) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // no-op after Commit
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger (deposit_id, account, cents) VALUES (?, ?, ?)`, d.ID, d.Account, d.Cents); err != nil {
			return err
		}
		if err := store.MarkProcessedTx(ctx, tx, msg.ID); err != nil {
			return err // dedupe.ErrAlreadyProcessed: another delivery won; the middleware settles this one
		}
		if d.ID == "d-3" && msg.Delivery.Attempt == 1 {
			mu.Lock()
			rolledBack++
			mu.Unlock()
			fmt.Printf("wallet  %s: crashed after the ledger write, before commit: rolled back, will be redelivered\n", d.ID)
			return errors.New("simulated crash before commit")
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		mu.Lock()
		credited++
		mu.Unlock()
		fmt.Printf("wallet  credited %s to %s: +%s\n", d.ID, d.Account, dollars(d.Cents))
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
				if settled++; settled == 2*len(deposits) {
					svc.Stop() // every delivery settled: the end of the demo
				}
			}
			return err
		}
	}

	// The wallet service, and the producer, which starts once the service
	// consumes.
	sub, err := b.Subscriber("wallet", 4)
	if err != nil {
		return err
	}
	if err := svc.Add("wallet", sub, topic, codec.Handler(codec.JSON[deposit](), credit), count, idempotent); err != nil {
		return err
	}
	if err := svc.Go("producer", func(ctx context.Context) error { return produce(ctx, b.Publisher(), topic) }); err != nil {
		return err
	}
	if err := svc.Run(ctx); err != nil || ctx.Err() != nil {
		return errors.Join(err, context.Cause(ctx)) // a failure, or the timeout or Ctrl-C before all settled
	}

	// The evidence, from the database.
	var rows int
	var balance int64
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*), COALESCE(SUM(cents), 0) FROM ledger`).Scan(&rows, &balance); err != nil {
		return err
	}
	var want int64
	for _, d := range deposits {
		want += d.Cents
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

// produce is an at-least-once producer: it sends every deposit twice,
// with the same ID.
func produce(ctx context.Context, pub message.Publisher, topic string) error {
	typed, err := codec.NewPublisher(pub, codec.JSON[deposit]())
	if err != nil {
		return err
	}
	for _, d := range deposits {
		msg, err := typed.Message(d.Account, d)
		if err != nil {
			return err
		}
		msg.ID = d.ID
		for range 2 {
			if err := pub.Publish(ctx, topic, msg); err != nil {
				return err
			}
		}
	}
	return nil
}

func dollars(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }
