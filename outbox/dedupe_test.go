package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// TestConsumerSideOutbox: consume, write business data, mark processed
// (dedupe SQL store) and write the outgoing event (outbox), all in one
// transaction. Duplicated inputs and a crashed first attempt still give
// exactly one outgoing event per input, relayed with one ID.
func TestConsumerSideOutbox(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			db := b.open(t)
			ob := newOutbox(t, db)
			biz := uniqueTable(t, db)
			if _, err := db.ExecContext(ctx, "CREATE TABLE "+biz+" (input_id TEXT PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
			store, err := sqlstore.New(ctx, db, sqlstore.WithTable(uniqueTable(t, db)))
			if err != nil {
				t.Fatal(err)
			}
			dd, err := dedupe.New(store)
			if err != nil {
				t.Fatal(err)
			}
			broker, err := inmem.NewBroker()
			if err != nil {
				t.Fatal(err)
			}
			pub, err := inmem.NewPublisher(broker)
			if err != nil {
				t.Fatal(err)
			}
			log := newLog()
			// The relay publishes to the broker and records.
			startRelay(t, newRelay(t, ob, &recorder{log: log, fail: func(topic string, m *message.Message) error {
				return pub.Publish(ctx, topic, m.Clone())
			}}))

			ph := "$1"
			if b.name == "SQLite" {
				ph = "?"
			}
			var crashOnce sync.Once
			handle := func(ctx context.Context, in *message.Message) error {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, "INSERT INTO "+biz+" (input_id) VALUES ("+ph+")", in.ID); err != nil {
					return err
				}
				if err := store.MarkProcessedTx(ctx, tx, ""); err != nil {
					return err
				}
				out := &message.Message{Key: in.Key, Payload: fmt.Appendf(nil, "shipped %s", in.Payload)}
				if err := ob.Write(ctx, tx, "shipments", out); err != nil {
					return err
				}
				crashed := false
				if string(in.Payload) == "o-3" {
					crashOnce.Do(func() { crashed = true })
				}
				if crashed {
					return errors.New("crash before commit (test)")
				}
				return tx.Commit()
			}
			sub, err := inmem.NewSubscriber(broker, inmem.WithGroup("shipping"), inmem.WithConcurrency(4))
			if err != nil {
				t.Fatal(err)
			}
			subDone := make(chan error, 1)
			go func() { subDone <- sub.Subscribe(ctx, "orders", message.Chain(handle, dd)) }()

			var inputs []*message.Message
			for i := range 10 {
				m := &message.Message{ID: fmt.Sprintf("in-%d", i), Key: fmt.Sprintf("c%d", i%3), Payload: fmt.Appendf(nil, "o-%d", i)}
				inputs = append(inputs, m)
				// Every input is delivered twice (an at-least-once producer).
				if err := pub.Publish(ctx, "orders", m.Clone(), m.Clone()); err != nil {
					t.Fatal(err)
				}
			}
			if err := broker.WaitSettled(ctx, "orders", "shipping"); err != nil {
				t.Fatal(err)
			}
			log.waitFor(t, "10 shipments", func(ps []published) bool { return len(ps) >= 10 })
			waitPending(t, ob, 0)
			got := log.snapshot()
			perInput := map[string][]string{}
			for _, p := range got {
				perInput[string(p.msg.Payload)] = append(perInput[string(p.msg.Payload)], p.msg.ID)
			}
			for _, in := range inputs {
				if outs := perInput["shipped "+string(in.Payload)]; len(outs) != 1 {
					t.Errorf("input %s gave %d outgoing events %v, want 1", in.ID, len(outs), outs)
				}
			}
			if len(got) != 10 {
				t.Errorf("%d events published, want 10: %s", len(got), describe(got))
			}
			var rows int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+biz).Scan(&rows); err != nil || rows != 10 {
				t.Errorf("%d business rows (%v), want 10", rows, err)
			}
			cancel()
			if err := <-subDone; err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		})
	}
}
