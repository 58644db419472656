package outbox_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/outbox"
)

// childEnv names the role of a re-executed test binary (see TestMain).
const childEnv = "FERRY_OUTBOX_CHILD"

// Settings of the child relay.
const (
	envDSN     = "FERRY_OUTBOX_DSN"
	envTable   = "FERRY_OUTBOX_TABLE"
	envBrokers = "FERRY_OUTBOX_BROKERS"
)

func runChild(role string) int {
	if role == "sqlite-relay" {
		if err := childSQLiteRelay(); err != nil {
			fmt.Fprintf(os.Stderr, "child relay: %v\n", err)
			return 1
		}
		return 0
	}
	if role != "relay" {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
		return 2
	}
	if err := childRelay(); err != nil {
		fmt.Fprintf(os.Stderr, "child relay: %v\n", err)
		return 1
	}
	return 0
}

// countingPublisher prints "published <n>" after each successful
// Publish call (unbuffered: the line is out before a SIGKILL can land).
type countingPublisher struct {
	message.Publisher
	mu sync.Mutex
}

func (p *countingPublisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(ctx, topic, msgs...)
	if err == nil {
		p.mu.Lock()
		_, _ = os.Stdout.WriteString("published " + strconv.Itoa(len(msgs)) + "\n")
		p.mu.Unlock()
	}
	return err
}

// childRelay relays the outbox table to Kafka until SIGTERM or SIGKILL.
func childRelay() error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	db, err := sql.Open("pgx", os.Getenv(envDSN))
	if err != nil {
		return err
	}
	defer db.Close()
	ob, err := outbox.New(ctx, db, outbox.WithTable(os.Getenv(envTable)))
	if err != nil {
		return err
	}
	kp, err := kafka.NewPublisher(strings.Split(os.Getenv(envBrokers), ","), kafka.WithTopicCreation(4, -1))
	if err != nil {
		return err
	}
	defer kp.Close()
	r, err := outbox.NewRelay(ob, &countingPublisher{Publisher: kp}, outbox.WithBatchSize(50),
		outbox.WithRebalanceInterval(100*time.Millisecond), outbox.WithBackoff(20*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// TestCrashedRelay kills relay processes (SIGKILL) mid-stream several
// times, restarting one each time, and then checks on the real Kafka
// topic that every committed message was published, duplicates only with
// the same ID, per-key order kept (first publications).
func TestCrashedRelay(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	dsn := testenv.PostgresDSN()
	db := openPostgres(t)
	ctx := context.Background()
	ob := newOutbox(t, db, outbox.WithShards(4))
	topic := fmt.Sprintf("outbox-crash-%d-%06d", time.Now().UnixMilli()%1e9, rand.IntN(1e6))
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 4, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topic) })

	const keys, perKey = 20, 100
	var all []string
	for round := range perKey / 10 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []*message.Message
		for k := range keys {
			msgs = append(msgs, numbered(fmt.Sprintf("k%d", k), round*10, 10)...)
		}
		if err := ob.Write(ctx, tx, topic, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		all = append(all, ids(msgs)...)
	}
	total := len(all)

	var mu sync.Mutex
	count := 0
	progress := make(chan struct{}, 1)
	start := func() (*exec.Cmd, chan struct{}) {
		cmd, out := testenv.StartChild(t, childEnv+"=relay", envDSN+"="+dsn, envTable+"="+ob.Table(),
			envBrokers+"="+strings.Join(brokers, ","))
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "published "); ok {
					k, _ := strconv.Atoi(n)
					mu.Lock()
					count += k
					mu.Unlock()
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}
		}()
		return cmd, done
	}
	waitCount := func(n int) {
		t.Helper()
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		for {
			mu.Lock()
			c := count
			mu.Unlock()
			if c >= n {
				return
			}
			select {
			case <-progress:
			case <-deadline.C:
				t.Fatalf("waited %v for %d publications, saw %d", wait, n, c)
			}
		}
	}
	kills := []int{total / 5, total / 2, 3 * total / 4}
	began := time.Now()
	for _, at := range kills {
		cmd, done := start()
		waitCount(at)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		_ = cmd.Wait()
		t.Logf("killed at %d after %v", at, time.Since(began))
	}
	// Two relays for the rest: they share the shards.
	cmdA, doneA := start()
	cmdB, doneB := start()
	waitPending(t, ob, 0)
	for _, c := range []struct {
		cmd  *exec.Cmd
		done chan struct{}
	}{{cmdA, doneA}, {cmdB, doneB}} {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-c.done
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("relay after SIGTERM: %v", err)
		}
	}

	t.Logf("relays done after %v", time.Since(began))
	// Read the topic back from the start, every partition in order.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	log := newLog()
	rec := &recorder{log: log}
	need := map[string]bool{}
	for _, id := range all {
		need[id] = true
	}
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for len(need) > 0 {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read %d records back, %d IDs missing", len(log.snapshot()), len(need))
		}
		fs.EachRecord(func(r *kgo.Record) {
			m := &message.Message{Key: string(r.Key), Payload: r.Value}
			for _, h := range r.Headers {
				if h.Key == kafka.HeaderID {
					m.ID = string(h.Value)
				}
			}
			delete(need, m.ID)
			_ = rec.Publish(ctx, topic, m)
		})
	}
	got := log.snapshot()
	dups := checkOrder(t, got)
	mu.Lock()
	t.Logf("%d messages, %d kills, %d publications reported by the relays, %d records read, %d duplicates (same IDs)", total, len(kills), count, len(got), dups)
	mu.Unlock()
}

// childSQLiteRelay runs a relay on the SQLite file named by envDSN and
// prints "running" once it owns the table.
func childSQLiteRelay() error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	db, err := sql.Open("sqlite", sqliteDSN(os.Getenv(envDSN)))
	if err != nil {
		return err
	}
	defer db.Close()
	ob, err := outbox.New(ctx, db, outbox.WithTable(os.Getenv(envTable)))
	if err != nil {
		return err
	}
	r, err := outbox.NewRelay(ob, &recorder{log: newLog()})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	for r.Stats().OwnedShards == 0 {
		select {
		case err := <-errc:
			return err
		case <-time.After(5 * time.Millisecond): // polling the relay's start
		}
	}
	_, _ = os.Stdout.WriteString("running\n")
	return <-errc
}

// TestSQLiteOneRelayAcrossProcesses: while a relay runs in another
// process on the SQLite file, Run fails with ErrRelayRunning; once that
// process is SIGKILLed, a relay starts at once (the kernel drops its
// lock).
func TestSQLiteOneRelayAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shop.db")
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() }) // after the tables are dropped
	ob := newOutbox(t, db)
	cmd, out := testenv.StartChild(t, childEnv+"=sqlite-relay", envDSN+"="+path, envTable+"="+ob.Table())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "running" {
		t.Fatalf("child relay did not start: %q %v", sc.Text(), sc.Err())
	}
	r := newRelay(t, ob, &recorder{log: newLog()})
	if err := r.Run(context.Background()); !errors.Is(err, outbox.ErrRelayRunning) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Run beside the child's relay: %v, want ErrRelayRunning naming another process", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	log := newLog()
	startRelay(t, newRelay(t, ob, &recorder{log: log}))
	msgs := numbered("k", 0, 2)
	write(t, db, ob, "orders", msgs...)
	log.waitIDs(t, ids(msgs))
}
