package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

// The order row and its event commit together; the relay publishes the
// event after the commit.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id TEXT PRIMARY KEY, total_cents INTEGER)`); err != nil {
		panic(err)
	}
	ob, err := outbox.New(ctx, db)
	if err != nil {
		panic(err)
	}

	// Place an order: one transaction for the row and the event.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	_, _ = tx.ExecContext(ctx, `INSERT INTO orders VALUES ('o-1', 4250)`)
	event := &message.Message{Key: "o-1", Payload: []byte(`{"order":"o-1","total_cents":4250}`)}
	if err := ob.Write(ctx, tx, "order-events", event); err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	// The relay publishes it to the broker (inmem here).
	broker, _ := inmem.NewBroker()
	pub, _ := inmem.NewPublisher(broker)
	sub, _ := inmem.NewSubscriber(broker, inmem.WithGroup("billing"))
	relay, err := outbox.NewRelay(ob, pub)
	if err != nil {
		panic(err)
	}
	go func() { _ = relay.Run(ctx) }()

	got := make(chan *message.Message, 1)
	go func() {
		_ = sub.Subscribe(ctx, "order-events", func(_ context.Context, m *message.Message) error {
			got <- m
			return nil
		})
	}()
	m := <-got
	fmt.Printf("received %s, same ID as written: %v\n", m.Payload, m.ID == event.ID)
	// Output:
	// received {"order":"o-1","total_cents":4250}, same ID as written: true
}
