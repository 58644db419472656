// Command outbox shows the transactional outbox: the order service writes
// the order row and its OrderPlaced event in one database transaction, and
// a relay publishes the committed events to the broker. An order whose
// transaction rolls back leaves neither a row nor an event; orders placed
// while the relay is down are published when it starts, so a crash
// between the commit and the publish loses nothing.
//
//	go run ./examples/outbox [-db postgres://ferry:ferry@127.0.0.1:5432/ferry] [-broker kafka://127.0.0.1:9092 | amqp://guest:guest@127.0.0.1:5672/]
//
// The database is SQLite (a file in a temporary directory) unless -db
// names a PostgreSQL URL; on PostgreSQL the relay is woken by NOTIFY as
// each transaction commits. The billing service consumes the events
// (group billing-service) and checks each customer's orders arrive in
// order. The last line is the result, checked against the database and
// the consumer:
//
//	result: placed=9 rolled-back=1 events-written=9 received=9 rolled-back-received=0 out-of-order=0 pending=0 order-rows=9
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
	"github.com/ferrymsg/ferry/runner"
)

var dbURL = flag.String("db", "sqlite", "database: sqlite (a temporary file) or a PostgreSQL URL postgres://user:pass@host:port/db")

type order struct {
	id, customer string
	cents        int64
	declined     bool // the payment fails inside the transaction
}

var orders = []order{
	{"o-1001", "alice", 4250, false},
	{"o-1002", "bob", 1999, false},
	{"o-1003", "alice", 780, false},
	{"o-1004", "bob", 12000, true},
	{"o-1005", "carol", 3100, false},
	{"o-1006", "alice", 2200, false},
	{"o-1007", "bob", 650, false},
	{"o-1008", "carol", 990, false},
	{"o-1009", "alice", 15000, false},
	{"o-1010", "carol", 4000, false},
}

// relayDownFor is how many orders are placed before the relay starts.
const relayDownFor = 3

// orderPlaced is the event's payload.
type orderPlaced struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
}

func main() { broker.Main("outbox", run) }

func run(ctx context.Context, brokerURL string) error {
	db, kind, cleanup, err := openDB(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer cleanup()
	suffix := ""
	if kind == "postgresql" {
		// A shared server: this run's own tables, dropped at exit.
		var b [3]byte
		_, _ = rand.Read(b[:])
		suffix = "_" + hex.EncodeToString(b[:])
	}
	ordersTable, outboxTable := "orders"+suffix, "ferry_outbox"+suffix
	ph := func(n int) string { // placeholder n
		if kind == "sqlite" {
			return "?"
		}
		return fmt.Sprintf("$%d", n)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE `+ordersTable+` (id TEXT PRIMARY KEY, customer TEXT NOT NULL, cents BIGINT NOT NULL)`); err != nil {
		return err
	}
	defer dropTables(db, ordersTable, outboxTable, outboxTable+"_dead", outboxTable+"_meta")
	ob, err := outbox.New(ctx, db, outbox.WithTable(outboxTable))
	if err != nil {
		return err
	}

	b, err := broker.Open(ctx, brokerURL)
	if err != nil {
		return err
	}
	defer b.Close()
	topic := b.Topic("order-events")
	fmt.Printf("outbox: %s broker, topic %s, %s database, outbox table %s\n", b.Kind, topic, kind, ob.Table())
	if err := b.Prepare(ctx, topic, "billing-service"); err != nil {
		return err
	}

	// The billing service: counts the events and checks each
	// customer's orders come in order.
	var (
		mu                         sync.Mutex
		received, outOfOrder, rbRx int
		last                       = map[string]string{}
		seen                       = map[string]bool{}
	)
	declined := map[string]bool{}
	want := 0
	for _, o := range orders {
		if o.declined {
			declined[o.id] = true
		} else {
			want++
		}
	}
	svc, err := runner.New(runner.WithSignals()) // broker.Main turns signals into ctx
	if err != nil {
		return err
	}
	allIn := make(chan struct{})
	bill := func(ctx context.Context, ev orderPlaced, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[m.ID] {
			return nil // a relayed duplicate: same ID
		}
		seen[m.ID] = true
		received++
		if declined[ev.Order] {
			rbRx++
		}
		if prev := last[ev.Customer]; prev != "" && prev > ev.Order {
			outOfOrder++
		}
		last[ev.Customer] = ev.Order
		fmt.Printf("billing-service  OrderPlaced/%s for %s: $%d.%02d (event %s)\n", ev.Order, ev.Customer, ev.Cents/100, ev.Cents%100, m.ID)
		if received == want {
			close(allIn)
		}
		return nil
	}
	sub, err := b.Subscriber("billing-service", 2)
	if err != nil {
		return err
	}
	if err := svc.Add("billing-service", sub, topic, codec.Handler(codec.JSON[orderPlaced](), bill)); err != nil {
		return err
	}

	// The order service: the order row and its event in one
	// transaction.
	placed, rolledBack, written := 0, 0, 0
	place := func(o order) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // no-op after Commit
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+ordersTable+` (id, customer, cents) VALUES (`+ph(1)+`, `+ph(2)+`, `+ph(3)+`)`, o.id, o.customer, o.cents); err != nil {
			return err
		}
		ev, err := codec.NewMessage(codec.JSON[orderPlaced](), o.customer, orderPlaced{Order: o.id, Customer: o.customer, Cents: o.cents})
		if err != nil {
			return err
		}
		ev.Headers["type"] = "OrderPlaced"
		if err := ob.Write(ctx, tx, topic, ev); err != nil {
			return err
		}
		if o.declined {
			rolledBack++
			fmt.Printf("order-service    %s for %s: payment declined after the writes: rolled back, no order row and no event\n", o.id, o.customer)
			return nil // the deferred Rollback discards the row and the event
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		placed++
		written++
		fmt.Printf("order-service    placed %s for %s: order row and OrderPlaced (event %s) committed together\n", o.id, o.customer, ev.ID)
		return nil
	}

	relay, err := outbox.NewRelay(ob, b.Publisher())
	if err != nil {
		return err
	}
	// The first orders go in while the relay is down: their events wait.
	for _, o := range orders[:relayDownFor] {
		if err := place(o); err != nil {
			return err
		}
	}
	pending, err := ob.Pending(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("relay            not running yet: %d events wait in the outbox, none lost\n", pending)

	// Then the relay and the rest of the orders, as tasks of the runner,
	// started once the billing service consumes; the order service stops
	// the service when billing has every event and the outbox is empty.
	if err := svc.Go("relay", func(ctx context.Context) error {
		fmt.Println("relay            started")
		return relay.Run(ctx)
	}); err != nil {
		return err
	}
	if err := svc.Go("order-service", func(ctx context.Context) error {
		for _, o := range orders[relayDownFor:] {
			if err := place(o); err != nil {
				return err
			}
		}
		select {
		case <-allIn:
		case <-ctx.Done():
			return ctx.Err()
		}
		for { // until the relay removed what it published
			n, err := ob.Pending(ctx)
			if err != nil {
				return err
			}
			if pending = n; n == 0 {
				svc.Stop()
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond): // polling the table
			}
		}
	}); err != nil {
		return err
	}
	if err := svc.Run(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("received %d of %d events (relay: %+v): %w", received, want, relay.Stats(), context.Cause(ctx))
	}

	var rows int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM `+ordersTable).Scan(&rows); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("result: placed=%d rolled-back=%d events-written=%d received=%d rolled-back-received=%d out-of-order=%d pending=%d order-rows=%d\n",
		placed, rolledBack, written, received, rbRx, outOfOrder, pending, rows)
	return nil
}

// openDB opens SQLite in a temporary directory, or PostgreSQL.
func openDB(ctx context.Context, url string) (db *sql.DB, kind string, cleanup func(), err error) {
	if url == "" || url == "sqlite" {
		dir, err := os.MkdirTemp("", "ferry-outbox-")
		if err != nil {
			return nil, "", nil, err
		}
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			os.RemoveAll(dir)
			return nil, "", nil, err
		}
		return db, "sqlite", func() { db.Close(); os.RemoveAll(dir) }, nil
	}
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		return nil, "", nil, fmt.Errorf("-db %s: want sqlite or a postgres:// URL", broker.Redact(url))
	}
	db, err = sql.Open("pgx", url)
	if err == nil {
		// Idle room for the relay's workers between batches (one per
		// shard, plus the lock and LISTEN sessions): database/sql keeps
		// only 2 by default and would reconnect (see the outbox doc).
		db.SetMaxIdleConns(outbox.DefaultShards + 4)
		err = db.PingContext(ctx)
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		return nil, "", nil, fmt.Errorf("cannot reach PostgreSQL at %s: %w", broker.Redact(url), err)
	}
	return db, "postgresql", func() { db.Close() }, nil
}

func dropTables(db *sql.DB, tables ...string) {
	for _, t := range tables {
		_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+t)
	}
}
