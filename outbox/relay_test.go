package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

// TestRelay is the behaviour of the relay on both databases. The
// mutants test (mutants_test.go) runs it on planted bugs.
func TestRelay(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { relaySuite(t, b) })
	}
}

func relaySuite(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.open(t)

	t.Run("publishes every committed message once in per-key order", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(4))
		var all []*message.Message
		for tx := range 20 {
			var msgs []*message.Message
			for k := range 5 {
				msgs = append(msgs, numbered(fmt.Sprintf("k%d", k), tx*2, 2)...)
			}
			write(t, db, ob, "orders", msgs...)
			all = append(all, msgs...)
		}
		for _, m := range all {
			if m.ID == "" || m.Time.IsZero() {
				t.Fatalf("Write did not assign an ID and a time: %+v", m)
			}
		}
		log := newLog()
		startRelay(t, newRelay(t, ob, &recorder{log: log}))
		got := log.waitIDs(t, ids(all))
		if dups := checkOrder(t, got); dups != 0 {
			t.Errorf("%d duplicates without any failure", dups)
		}
		for _, p := range got {
			if p.topic != "orders" {
				t.Errorf("published to %q", p.topic)
			}
		}
		waitPending(t, ob, 0)
	})

	t.Run("a rolled-back transaction publishes nothing", func(t *testing.T) {
		ob := newOutbox(t, db)
		log := newLog()
		startRelay(t, newRelay(t, ob, &recorder{log: log}))
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		rolled := numbered("k", 0, 3)
		if err := ob.Write(ctx, tx, "orders", rolled...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		// A later committed message of the same key: once it is out,
		// the rolled-back ones would have been too.
		after := numbered("k", 10, 1)
		write(t, db, ob, "orders", after...)
		got := log.waitIDs(t, ids(after))
		for _, p := range got {
			for _, m := range rolled {
				if p.msg.ID == m.ID {
					t.Errorf("rolled-back message %s (%s) was published", m.ID, m.Payload)
				}
			}
		}
		if len(got) != 1 {
			t.Errorf("published %d messages, want 1: %s", len(got), describe(got))
		}
	})

	t.Run("a broker outage is retried with backoff in order and loses nothing", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(2))
		log := newLog()
		var down atomic.Bool
		down.Store(true)
		var refused atomic.Int32
		rec := &recorder{log: log, callFail: func() error {
			if down.Load() {
				refused.Add(1)
				return fmt.Errorf("publish: %w", errTransient)
			}
			return nil
		}}
		r := newRelay(t, ob, rec)
		startRelay(t, r)
		var all []*message.Message
		for i := range 10 {
			msgs := append(numbered("a", i*3, 3), numbered("b", i*3, 3)...)
			write(t, db, ob, "orders", msgs...)
			all = append(all, msgs...)
		}
		waitCond(t, "the relay to be refused several times", func() bool { return refused.Load() >= 3 })
		if n := len(log.snapshot()); n != 0 {
			t.Fatalf("%d published while the broker was down", n)
		}
		if s := r.Stats(); s.Failures == 0 || s.LastError == nil || !errors.Is(s.LastError, errTransient) {
			t.Errorf("Stats during the outage = %+v, want failures and the last error", s)
		}
		down.Store(false)
		got := log.waitIDs(t, ids(all))
		if dups := checkOrder(t, got); dups != 0 {
			t.Errorf("%d duplicates", dups)
		}
		waitPending(t, ob, 0)
	})

	t.Run("a failing message holds back the later messages of its key only", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(1))
		log := newLog()
		var failures atomic.Int32
		// Like a Kafka partition or an AMQP channel, a failure fails
		// the later messages of its key in the same call too.
		rec := &recorder{log: log, fail: func(topic string, m *message.Message) error {
			if string(m.Payload) == "a:1" && failures.Load() < 3 {
				failures.Add(1)
				return fmt.Errorf("publish a:1: %w", errTransient)
			}
			return nil
		}}
		rec.streamFailures = true
		var a, b []*message.Message
		for i := range 5 {
			a, b = append(a, numbered("a", i, 1)...), append(b, numbered("b", i, 1)...)
			write(t, db, ob, "orders", a[i], b[i])
		}
		// All rows are in before the relay starts: its first batch
		// holds every one.
		startRelay(t, newRelay(t, ob, rec))
		got := log.waitIDs(t, append(ids(a), ids(b)...))
		checkOrder(t, got)
		// b went on while a:1 failed: all of b came out before a:1.
		firstA1 := -1
		lastB := -1
		for i, p := range got {
			switch {
			case p.msg.ID == a[1].ID && firstA1 < 0:
				firstA1 = i
			case p.msg.Key == "b":
				lastB = i
			}
		}
		if failures.Load() != 3 || lastB > firstA1 {
			t.Errorf("a:1 failed %d times (want 3); published %s: want every b before a:1", failures.Load(), describe(got))
		}
	})

	t.Run("messages a publisher accepted after a failed one of their key are published again after it", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(1))
		log := newLog()
		var failures atomic.Int32
		// This publisher fails a:1 alone and accepts the later a's of
		// the call (neither adapter does that).
		rec := &recorder{log: log, fail: func(topic string, m *message.Message) error {
			if string(m.Payload) == "a:1" && failures.Load() < 2 {
				failures.Add(1)
				return fmt.Errorf("publish a:1: %w", errTransient)
			}
			return nil
		}}
		startRelay(t, newRelay(t, ob, rec))
		a := numbered("a", 0, 5)
		write(t, db, ob, "orders", a...)
		log.waitIDs(t, ids(a))
		waitPending(t, ob, 0)
		got := log.snapshot()
		// The last copy of each message, in publication order, is in
		// order: a consumer applying every delivery ends in order.
		lastAt := map[string]int{}
		for i, p := range got {
			lastAt[p.msg.ID] = i
		}
		for i := 1; i < len(a); i++ {
			if lastAt[a[i].ID] < lastAt[a[i-1].ID] {
				t.Errorf("last copy of a:%d published before the last copy of a:%d: %s", i, i-1, describe(got))
			}
		}
	})

	t.Run("a permanently rejected message goes to the dead table and can be replayed", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(2))
		log := newLog()
		var fixed atomic.Bool
		rec := &recorder{log: log, fail: func(topic string, m *message.Message) error {
			if m.Headers["poison"] == "yes" && !fixed.Load() {
				return fmt.Errorf("broker says: %w", message.ErrMessageTooLarge)
			}
			return nil
		}}
		r := newRelay(t, ob, rec)
		startRelay(t, r)
		msgs := numbered("k", 0, 5)
		msgs[2].Headers = map[string]string{"poison": "yes"}
		write(t, db, ob, "orders", msgs...)
		// The others of the key are not blocked behind it.
		rest := append(append([]*message.Message{}, msgs[:2]...), msgs[3:]...)
		got := log.waitIDs(t, ids(rest))
		checkOrder(t, got)
		var dead []outbox.DeadLetter
		waitCond(t, "a dead letter", func() bool {
			var err error
			dead, err = ob.DeadLetters(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			return len(dead) > 0
		})
		if len(dead) != 1 {
			t.Fatalf("%d dead letters, want 1: %+v", len(dead), dead)
		}
		d := dead[0]
		if d.Message.ID != msgs[2].ID || d.Topic != "orders" || d.Message.Key != "k" || string(d.Message.Payload) != "k:2" ||
			d.Message.Headers["poison"] != "yes" || !strings.Contains(d.Error, "message too large") || d.Attempts != 1 {
			t.Errorf("dead letter = %+v %+v, want message %s with the error", d, d.Message, msgs[2].ID)
		}
		// The relay counts the dead letter just after its transaction
		// committed.
		waitCond(t, "Stats().DeadLettered > 0", func() bool { return r.Stats().DeadLettered > 0 })
		if s := r.Stats(); s.DeadLettered != 1 {
			t.Errorf("Stats().DeadLettered = %d, want 1", s.DeadLettered)
		}
		for _, p := range log.snapshot() {
			if p.msg.ID == msgs[2].ID {
				t.Errorf("the rejected message was reported published")
			}
		}
		fixed.Store(true)
		n, err := ob.Replay(ctx, d.Seq)
		if err != nil || n != 1 {
			t.Fatalf("Replay = %d, %v; want 1", n, err)
		}
		log.waitIDs(t, []string{msgs[2].ID})
		if left, err := ob.DeadLetters(ctx, 10); err != nil || len(left) != 0 {
			t.Errorf("after replay: %d dead letters, %v", len(left), err)
		}
	})

	t.Run("a call refused for one bad message dead-letters that message only", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(1))
		log := newLog()
		rec := &recorder{log: log, checkCall: func(msgs []*message.Message) error {
			for i, m := range msgs {
				if len(m.Payload) > 100 {
					return fmt.Errorf("adapter: %w: message #%d of %d is %d bytes", message.ErrMessageTooLarge, i, len(msgs), len(m.Payload))
				}
			}
			return nil
		}}
		r := newRelay(t, ob, rec)
		startRelay(t, r)
		msgs := append(numbered("k", 0, 2), &message.Message{Key: "k", Payload: make([]byte, 200)})
		msgs = append(msgs, numbered("k", 3, 2)...)
		write(t, db, ob, "orders", msgs...)
		rest := append(append([]*message.Message{}, msgs[:2]...), msgs[3:]...)
		checkOrder(t, log.waitIDs(t, ids(rest)))
		waitPending(t, ob, 0)
		dead, err := ob.DeadLetters(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].Message.ID != msgs[2].ID || !strings.Contains(dead[0].Error, "message too large") {
			t.Errorf("dead letters %+v, want only the 200-byte message", dead)
		}
	})

	t.Run("rows are kept for the retention and purged after it", func(t *testing.T) {
		var now atomic.Int64
		now.Store(time.Now().UnixMicro())
		clock := func() time.Time { return time.UnixMicro(now.Load()) }
		ob := newOutbox(t, db, outbox.WithRetention(time.Hour), outbox.WithClock(clock))
		log := newLog()
		startRelay(t, newRelay(t, ob, &recorder{log: log}))
		msgs := numbered("k", 0, 3)
		write(t, db, ob, "orders", msgs...)
		log.waitIDs(t, ids(msgs))
		waitPending(t, ob, 0)
		if n, err := ob.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("Purge within the retention = %d, %v; want 0", n, err)
		}
		now.Add((time.Hour + time.Second).Microseconds())
		if n, err := ob.Purge(ctx); err != nil || n != 3 {
			t.Fatalf("Purge after the retention = %d, %v; want 3", n, err)
		}
	})
}

func waitPending(t testing.TB, ob *outbox.Outbox, want int64) {
	t.Helper()
	var n int64
	waitCond(t, fmt.Sprintf("%d pending rows", want), func() bool {
		var err error
		n, err = ob.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n == want
	})
}

// waitCond polls cond (an external condition: the database, counters)
// until it holds.
func waitCond(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond) // polling an external condition with a deadline
	}
}

// TestPostgres covers what only PostgreSQL has: concurrent writers and
// several relays.
func TestPostgres(t *testing.T) { pgSuite(t) }

func pgSuite(t *testing.T) {
	db := openPostgres(t)
	ctx := context.Background()

	t.Run("a row committed after a higher sequence number was published is not skipped", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(1))
		log := newLog()
		startRelay(t, newRelay(t, ob, &recorder{log: log}))
		// A takes the lower sequence number and commits last.
		txA, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer txA.Rollback()
		a := numbered("a", 0, 1)
		if err := ob.Write(ctx, txA, "orders", a...); err != nil {
			t.Fatal(err)
		}
		b := numbered("b", 0, 1)
		write(t, db, ob, "orders", b...)
		log.waitIDs(t, ids(b))
		if err := txA.Commit(); err != nil {
			t.Fatal(err)
		}
		got := log.waitIDs(t, ids(a))
		if len(got) != 2 {
			t.Errorf("published %s, want b then a once each", describe(got))
		}
	})

	t.Run("a transaction that wrote after another committed publishes after it", func(t *testing.T) {
		// T2 gets its transaction ID first (an earlier write), then
		// waits for T1's row lock; T1 writes k:1 and commits; T2 writes
		// k:2. Ordering by transaction ID would publish k:2 first.
		ob := newOutbox(t, db, outbox.WithShards(1))
		biz := uniqueTable(t, db)
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+biz+" (id INT PRIMARY KEY, n INT NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+biz+" VALUES (1, 0)"); err != nil {
			t.Fatal(err)
		}
		log := newLog()
		startRelay(t, newRelay(t, ob, &recorder{log: log}))
		t2, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer t2.Rollback()
		if _, err := t2.ExecContext(ctx, "INSERT INTO "+biz+" VALUES (2, 0)"); err != nil {
			t.Fatal(err)
		}
		t1, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer t1.Rollback()
		if _, err := t1.ExecContext(ctx, "UPDATE "+biz+" SET n = n + 1 WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		m1 := numbered("k", 1, 1)
		if err := ob.Write(ctx, t1, "orders", m1...); err != nil {
			t.Fatal(err)
		}
		locked := make(chan error, 1)
		go func() {
			_, err := t2.ExecContext(ctx, "UPDATE "+biz+" SET n = n + 1 WHERE id = 1") // waits for T1
			locked <- err
		}()
		if err := t1.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-locked; err != nil {
			t.Fatal(err)
		}
		m2 := numbered("k", 2, 1)
		if err := ob.Write(ctx, t2, "orders", m2...); err != nil {
			t.Fatal(err)
		}
		if err := t2.Commit(); err != nil {
			t.Fatal(err)
		}
		got := log.waitIDs(t, append(ids(m1), ids(m2)...))
		checkOrder(t, got)
	})

	t.Run("concurrent writers and two relays: per-key order exact, every message once", func(t *testing.T) {
		ob := newOutbox(t, db, outbox.WithShards(8))
		log := newLog()
		r1 := newRelay(t, ob, &recorder{name: "r1", log: log}, outbox.WithBatchSize(20))
		r2 := newRelay(t, ob, &recorder{name: "r2", log: log}, outbox.WithBatchSize(20))
		startRelay(t, r1)
		startRelay(t, r2)
		waitCond(t, "the two relays to share the 8 shards", func() bool {
			n1, n2 := r1.Stats().OwnedShards, r2.Stats().OwnedShards
			return n1 > 0 && n2 > 0 && n1+n2 == 8
		})
		const writers, perWriter, keys = 8, 40, 16
		var mu sync.Mutex
		var all []string
		var wg sync.WaitGroup
		next := map[string]int{}
		var keyMu sync.Mutex
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					k := fmt.Sprintf("k%d", (w*perWriter+i)%keys)
					// Per-key numbering in commit order: hold the
					// key's mutex across the commit, as a row lock
					// of the business data would.
					keyMu.Lock()
					n := next[k]
					next[k] = n + 1
					msgs := numbered(k, n, 1)
					tx, err := db.BeginTx(ctx, nil)
					if err == nil {
						err = ob.Write(ctx, tx, "orders", msgs...)
						if err == nil {
							err = tx.Commit()
						} else {
							_ = tx.Rollback()
						}
					}
					keyMu.Unlock()
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					all = append(all, msgs[0].ID)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		got := log.waitIDs(t, all)
		if dups := checkOrder(t, got); dups != 0 {
			t.Errorf("%d duplicates without a crash", dups)
		}
		by := map[string]int{}
		for _, p := range got {
			by[p.by]++
		}
		if by["r1"] == 0 || by["r2"] == 0 {
			t.Errorf("published by r1 %d, by r2 %d: want both relays to share the shards", by["r1"], by["r2"])
		}
		waitPending(t, ob, 0)
	})

	t.Run("NOTIFY wakes the relay without polling", func(t *testing.T) {
		ob := newOutbox(t, db)
		log := newLog()
		r := newRelay(t, ob, &recorder{log: log}, outbox.WithPollInterval(time.Hour))
		startRelay(t, r)
		waitCond(t, "the relay to listen and own its shards", func() bool {
			s := r.Stats()
			return s.Listening && s.OwnedShards == ob.Shards()
		})
		// The relay's first read happens when it takes a shard; this
		// row commits after, so only a NOTIFY can bring it out.
		for i := range 3 {
			msgs := numbered("k", i, 1)
			write(t, db, ob, "orders", msgs...)
			log.waitIDs(t, ids(msgs))
		}
	})
}
