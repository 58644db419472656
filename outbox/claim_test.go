package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

// TestClaimPlan checks the plan of the relay's claim on a table that was
// never analyzed, as an outbox table's statistics usually are wrong: the
// batch must come from the pending index in its order (an index scan,
// no sort), not from a bitmap scan of every pending row of the shard and
// a sort, which made each batch cost in proportion to the backlog.
func TestClaimPlan(t *testing.T) {
	db := openPostgres(t)
	ctx := context.Background()
	ob := newOutbox(t, db, outbox.WithShards(8))
	msgs := make([]*message.Message, 20_000)
	for i := range msgs {
		msgs[i] = &message.Message{Key: fmt.Sprintf("k%d", i%100), Payload: make([]byte, 1024)}
	}
	for i := 0; i < len(msgs); i += 5000 {
		write(t, db, ob, "orders", msgs[i:i+5000]...)
	}
	r, err := outbox.NewRelay(ob, &recorder{log: newLog()})
	if err != nil {
		t.Fatal(err)
	}
	settings, q, args := outbox.ClaimStatements(r, 0)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, settings); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, "EXPLAIN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	pending := strings.TrimPrefix(ob.Table(), "public.") + "_pending"
	if !strings.Contains(text, "Index Scan using "+pending) || strings.Contains(text, "Sort") || strings.Contains(text, "Bitmap") {
		t.Errorf("the claim is not an ordered scan of %s:\n%s", pending, text)
	}
}
