package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	ob := newOutbox(t, db, outbox.WithMaxMessageSize(100), outbox.WithTopicCheck(adapter.ValidateLogTopic))
	var nilCtx context.Context
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	m := func() *message.Message { return &message.Message{Key: "k", Payload: []byte("x")} }

	writes := []struct {
		name  string
		call  func() error
		is    error
		names string
	}{
		{"nil tx", func() error { return ob.Write(ctx, nil, "t", m()) }, message.ErrInvalidConfig, "nil *sql.Tx"},
		{"nil context", func() error { return ob.Write(nilCtx, tx, "t", m()) }, message.ErrInvalidConfig, "nil context"},
		{"nil outbox", func() error { var o *outbox.Outbox; return o.Write(ctx, tx, "t", m()) }, message.ErrInvalidConfig, "nil *Outbox"},
		{"empty topic", func() error { return ob.Write(ctx, tx, "", m()) }, message.ErrInvalidTopic, "empty"},
		{"topic over 255 bytes", func() error { return ob.Write(ctx, tx, strings.Repeat("t", 256), m()) }, message.ErrInvalidTopic, "256 bytes"},
		{"topic the check rejects", func() error { return ob.Write(ctx, tx, "a b", m()) }, message.ErrInvalidTopic, "illegal character"},
		{"non-UTF-8 topic", func() error { return ob.Write(ctx, tx, "a\xff", m()) }, message.ErrInvalidTopic, "not UTF-8"},
		{"nil message", func() error { return ob.Write(ctx, tx, "t", m(), nil) }, message.ErrInvalidMessage, "message #1 of 2 is nil"},
		{"oversized payload", func() error {
			return ob.Write(ctx, tx, "t", &message.Message{Payload: make([]byte, 101)})
		}, message.ErrMessageTooLarge, "the limit is 100"},
		{"non-UTF-8 key", func() error { return ob.Write(ctx, tx, "t", &message.Message{Key: "\xfe"}) }, message.ErrInvalidMessage, "key"},
		{"NUL in a header", func() error {
			return ob.Write(ctx, tx, "t", &message.Message{Headers: map[string]string{"h": "a\x00"}})
		}, message.ErrInvalidMessage, "NUL"},
		{"empty header name", func() error {
			return ob.Write(ctx, tx, "t", &message.Message{Headers: map[string]string{"": "v"}})
		}, message.ErrInvalidMessage, "empty header name"},
	}
	for _, c := range writes {
		t.Run("Write "+c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.names) {
				t.Errorf("err = %v, want %v naming %q", err, c.is, c.names)
			}
		})
	}
	t.Run("a rejected Write writes nothing, not even its valid messages", func(t *testing.T) {
		good := m()
		if err := ob.Write(ctx, tx, "t", good, &message.Message{Payload: make([]byte, 500)}); !errors.Is(err, message.ErrMessageTooLarge) {
			t.Fatalf("err = %v", err)
		}
		if good.ID != "" {
			t.Errorf("the valid message got ID %q from a rejected call", good.ID)
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+ob.Table()).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows in the transaction (%v), want 0", n, err)
		}
	})

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}
	var typedNil *inmem.Publisher
	constructors := []struct {
		name  string
		call  func() error
		names string
	}{
		{"New nil db", func() error { _, err := outbox.New(ctx, nil); return err }, "nil *sql.DB"},
		{"New nil context", func() error { _, err := outbox.New(nilCtx, db); return err }, "nil context"},
		{"WithTable bad name", func() error { _, err := outbox.New(ctx, db, outbox.WithTable("a-b")); return err }, `"a-b" is not a plain identifier`},
		{"WithShards 0", func() error { _, err := outbox.New(ctx, db, outbox.WithShards(0)); return err }, "WithShards(0)"},
		{"WithShards disagrees with the table", func() error {
			_, err := outbox.New(ctx, db, outbox.WithTable(ob.Table()), outbox.WithShards(3))
			return err
		}, "created with 8 shards"},
		{"WithMaxMessageSize 0", func() error { _, err := outbox.New(ctx, db, outbox.WithMaxMessageSize(0)); return err }, "WithMaxMessageSize(0)"},
		{"WithRetention negative", func() error { _, err := outbox.New(ctx, db, outbox.WithRetention(-1)); return err }, "WithRetention"},
		{"WithTopicCheck nil", func() error { _, err := outbox.New(ctx, db, outbox.WithTopicCheck(nil)); return err }, "WithTopicCheck(nil)"},
		{"NewRelay nil outbox", func() error { _, err := outbox.NewRelay(nil, pub); return err }, "nil *Outbox"},
		{"NewRelay nil publisher", func() error { _, err := outbox.NewRelay(ob, nil); return err }, "nil message.Publisher"},
		{"NewRelay typed-nil publisher", func() error { _, err := outbox.NewRelay(ob, typedNil); return err }, "nil message.Publisher"},
		{"WithBatchSize 0", func() error { _, err := outbox.NewRelay(ob, pub, outbox.WithBatchSize(0)); return err }, "WithBatchSize(0)"},
		{"WithBackoff max below initial", func() error {
			_, err := outbox.NewRelay(ob, pub, outbox.WithBackoff(2, 1))
			return err
		}, "WithBackoff"},
		{"WithPermanentError nil", func() error { _, err := outbox.NewRelay(ob, pub, outbox.WithPermanentError(nil)); return err }, "WithPermanentError(nil)"},
		{"Run nil context", func() error {
			r, err := outbox.NewRelay(ob, pub)
			if err != nil {
				return err
			}
			return r.Run(nilCtx)
		}, "nil context"},
	}
	for _, c := range constructors {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), c.names) {
				t.Errorf("err = %v, want ErrInvalidConfig naming %q", err, c.names)
			}
		})
	}

	t.Run("a second relay on one SQLite table is refused", func(t *testing.T) {
		r1 := newRelay(t, ob, pub)
		startRelay(t, r1)
		waitCond(t, "the first relay to own its shards", func() bool { return r1.Stats().OwnedShards > 0 })
		r2 := newRelay(t, ob, pub)
		if err := r2.Run(ctx); !errors.Is(err, outbox.ErrRelayRunning) {
			t.Errorf("second relay: %v, want ErrRelayRunning", err)
		}
	})
}
