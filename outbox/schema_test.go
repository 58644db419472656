package outbox_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/outbox"
)

func TestSchema(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			dialect := outbox.SQLite
			if b.name == "PostgreSQL" {
				dialect = outbox.PostgreSQL
			}

			t.Run("New is idempotent, also from several goroutines at once", func(t *testing.T) {
				table := uniqueTable(t, db)
				var wg sync.WaitGroup
				errs := make(chan error, 4)
				for range 4 {
					wg.Go(func() {
						_, err := outbox.New(ctx, db, outbox.WithTable(table), outbox.WithShards(3))
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Error(err)
					}
				}
				ob, err := outbox.New(ctx, db, outbox.WithTable(table))
				if err != nil {
					t.Fatal(err)
				}
				if ob.Shards() != 3 || ob.Dialect() != dialect || ob.DeadTable() != table+"_dead" {
					t.Errorf("Shards %d, Dialect %v, DeadTable %s: want the stored 3 shards, %v, %s_dead", ob.Shards(), ob.Dialect(), ob.DeadTable(), dialect, table)
				}
			})

			t.Run("a schema-qualified table name works", func(t *testing.T) {
				schema := "main"
				if dialect == outbox.PostgreSQL {
					schema = "public"
				}
				ob, err := outbox.New(ctx, db, outbox.WithTable(schema+"."+uniqueTable(t, db)))
				if err != nil {
					t.Fatal(err)
				}
				log := newLog()
				startRelay(t, newRelay(t, ob, &recorder{log: log}))
				msgs := numbered("k", 0, 3)
				write(t, db, ob, "t", msgs...)
				checkOrder(t, log.waitIDs(t, ids(msgs)))
			})

			t.Run("Schema's DDL is what New needs without schema creation", func(t *testing.T) {
				table := uniqueTable(t, db)
				if _, err := outbox.New(ctx, db, outbox.WithTable(table), outbox.WithoutSchemaCreation()); err == nil {
					t.Fatal("New without schema creation on a missing table succeeded")
				}
				ddl, err := outbox.Schema(dialect, table, 5)
				if err != nil {
					t.Fatal(err)
				}
				for stmt := range strings.SplitSeq(ddl, ";\n") {
					if _, err := db.ExecContext(ctx, strings.TrimSuffix(stmt, ";")); err != nil {
						t.Fatalf("%s: %v", stmt, err)
					}
				}
				ob, err := outbox.New(ctx, db, outbox.WithTable(table), outbox.WithoutSchemaCreation())
				if err != nil {
					t.Fatal(err)
				}
				if ob.Shards() != 5 {
					t.Errorf("Shards() = %d, want 5", ob.Shards())
				}
				write(t, db, ob, "t", numbered("k", 0, 2)...)
				if n, err := ob.Pending(ctx); err != nil || n != 2 {
					t.Errorf("Pending = %d, %v; want 2", n, err)
				}
			})
		})
	}
}
