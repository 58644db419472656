package reliability_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// childEnv names the role of a re-executed test binary (see TestMain).
const childEnv = "FERRY_RELIABILITY_CHILD"

// Settings passed to the child consumer through its environment.
const (
	envBroker = "FERRY_REL_BROKER" // "kafka" or "amqp"
	envAddr   = "FERRY_REL_ADDR"   // Kafka seed broker or AMQP URL
	envTopic  = "FERRY_REL_TOPIC"
	envGroup  = "FERRY_REL_GROUP"
	envTable  = "FERRY_REL_TABLE" // the side-effect table; the dedupe table is <table>_dedupe
	envDSN    = "FERRY_REL_DSN"
)

// runChild runs a re-executed test binary as role and returns its exit
// code.
func runChild(role string) int {
	if role != "consumer" {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
		return 2
	}
	if err := crashConsumer(); err != nil {
		fmt.Fprintf(os.Stderr, "child consumer: %v\n", err)
		return 1
	}
	return 0
}

// crashConsumer is the consumer the crash test kills. For each delivery it
// prints "got <id>"; the handler, wrapped by the dedupe middleware on the
// SQL store, inserts a row for the message and marks the key processed in
// the same transaction, then prints "done <id>". It runs until SIGTERM
// (graceful) or SIGKILL.
func crashConsumer() error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	table := os.Getenv(envTable)
	db, err := sql.Open("pgx", os.Getenv(envDSN))
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := sqlstore.New(ctx, db, sqlstore.WithTable(table+"_dedupe"))
	if err != nil {
		return err
	}
	// A short lease: claims held by a killed consumer free up quickly.
	dd, err := dedupe.New(store, dedupe.WithLease(2*time.Second))
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	say := func(what, id string) {
		outMu.Lock()
		defer outMu.Unlock()
		_, _ = os.Stdout.WriteString(what + " " + id + "\n") // unbuffered: survives SIGKILL
	}
	effect := func(ctx context.Context, m *message.Message) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (msg_id) VALUES ($1)", m.ID); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond) // work between the write and the commit, where a kill lands
		if err := store.MarkProcessedTx(ctx, tx, m.ID); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		say("done", m.ID)
		return nil
	}
	count := func(next message.Handler) message.Handler {
		return func(ctx context.Context, m *message.Message) error {
			say("got", m.ID)
			return next(ctx, m)
		}
	}
	h := message.Chain(effect, count, dd)

	topic, group, addr := os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envAddr)
	var sub message.Subscriber
	switch os.Getenv(envBroker) {
	case "kafka":
		sub, err = kafka.NewSubscriber([]string{addr}, kafka.WithGroup(group), kafka.WithConcurrency(4),
			kafka.WithRedeliveryBackoff(50*time.Millisecond, 500*time.Millisecond),
			kafka.WithClientOptions(
				kgo.InstanceID("crash-consumer"), // a restarted child takes the killed one's place at once
				kgo.HeartbeatInterval(200*time.Millisecond),
				kgo.SessionTimeout(6*time.Second),
				kgo.FetchMaxWait(200*time.Millisecond),
			))
	case "amqp":
		sub, err = amqp.NewSubscriber(addr, amqp.WithGroup(group), amqp.WithConcurrency(4),
			amqp.WithRedeliveryBackoff(50*time.Millisecond, 500*time.Millisecond))
	default:
		err = fmt.Errorf("unknown broker %q", os.Getenv(envBroker))
	}
	if err != nil {
		return err
	}
	defer sub.Close()
	return sub.Subscribe(ctx, topic, h)
}

// child is a running child consumer and its progress.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // stdout drained
}

// crashRun drives the crash test of one broker: it publishes n messages
// to topic, runs the child consumer, kills it with SIGKILL whenever the
// total of "done" lines passes one of the kill points, starts a new one,
// and lets the last one finish. It returns the deliveries seen ("got"
// lines), the kills, and the rows of the side-effect table.
type crashRun struct {
	broker, addr, topic, group, table, dsn string

	mu    sync.Mutex
	got   map[string]int
	done  int
	tick  chan struct{}
	stray []string
}

func (c *crashRun) start(t *testing.T) *child {
	t.Helper()
	cmd, out := testenv.StartChild(t, childEnv+"=consumer",
		envBroker+"="+c.broker, envAddr+"="+c.addr, envTopic+"="+c.topic,
		envGroup+"="+c.group, envTable+"="+c.table, envDSN+"="+c.dsn)
	ch := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(ch.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			what, id, _ := strings.Cut(sc.Text(), " ")
			c.mu.Lock()
			switch what {
			case "got":
				c.got[id]++
			case "done":
				c.done++
			default:
				c.stray = append(c.stray, sc.Text())
			}
			c.mu.Unlock()
			select {
			case c.tick <- struct{}{}:
			default:
			}
		}
	}()
	return ch
}

func (c *crashRun) doneCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// waitFor waits until cond holds or timeout passes.
func (c *crashRun) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-c.tick:
		case <-poll.C:
		case <-deadline.C:
			return cond()
		}
	}
	return true
}

func (c *crashRun) rows(t *testing.T, db *sql.DB) (total, distinct int) {
	t.Helper()
	if err := db.QueryRow("SELECT count(*), count(DISTINCT msg_id) FROM "+c.table).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	return total, distinct
}

func testCrash(t *testing.T, broker, addr string, pub message.Publisher, prepare func(topic, group string)) {
	dsn := testenv.NeedPostgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := &crashRun{broker: broker, addr: addr, topic: name("rel_crash_" + broker), group: "crash",
		table: name("rel_effects_" + broker), dsn: dsn, got: map[string]int{}, tick: make(chan struct{}, 1)}
	if _, err := db.Exec("CREATE TABLE " + c.table + " (id BIGSERIAL PRIMARY KEY, msg_id TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + c.table)
		_, _ = db.Exec("DROP TABLE IF EXISTS " + c.table + "_dedupe")
	})
	if prepare != nil {
		prepare(c.topic, c.group)
	}

	const n = 1500
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = &message.Message{ID: fmt.Sprintf("m%05d", i), Key: fmt.Sprint(i % 16), Payload: []byte("work")}
	}
	for i := 0; i < n; i += 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := pub.Publish(ctx, c.topic, msgs[i:i+100]...)
		cancel()
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	kills := 0
	for _, at := range []int{n / 5, n / 2, n * 4 / 5} {
		ch := c.start(t)
		if !c.waitFor(2*time.Minute, func() bool { return c.doneCount() >= at }) {
			_ = ch.cmd.Process.Kill()
			_ = ch.cmd.Wait()
			t.Fatalf("child processed only %d of %d messages before kill %d", c.doneCount(), n, kills+1)
		}
		if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-ch.done
		err := ch.cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child exit: %v, want killed by SIGKILL", err)
		}
		kills++
	}
	// The last child runs until every message has its row, then stops
	// gracefully.
	ch := c.start(t)
	ok := c.waitFor(2*time.Minute, func() bool { _, d := c.rows(t, db); return d == n })
	if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-ch.done
	if err := ch.cmd.Wait(); err != nil {
		t.Errorf("last child: %v, want a clean exit on SIGTERM", err)
	}
	total, distinct := c.rows(t, db)
	if !ok {
		t.Errorf("only %d of %d messages have a side-effect row", distinct, n)
	}
	if total != distinct {
		t.Errorf("side effect happened %d times for %d messages: %d duplicates despite the SQL dedupe store", total, distinct, total-distinct)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.stray) > 0 {
		t.Errorf("unexpected child output: %q", c.stray)
	}
	l := newLedger()
	l.published(msgs, nil)
	var lost []string
	for _, m := range msgs {
		for range c.got[m.ID] {
			l.record(m.ID)
		}
		if c.got[m.ID] == 0 {
			lost = append(lost, m.ID)
		}
	}
	if len(lost) > 0 {
		type idn struct {
			id string
			n  int
		}
		var most []idn
		for id, k := range c.got {
			most = append(most, idn{id, k})
		}
		sort.Slice(most, func(i, j int) bool { return most[i].n > most[j].n })
		t.Logf("most delivered: %v", most[:min(10, len(most))])
	}
	r := l.result()
	r.Fault, r.Adapter = "consumer SIGKILL", broker
	r.Injection = fmt.Sprintf("child consumer (4 handlers, dedupe on PostgreSQL) killed with SIGKILL %d times mid-stream and restarted", kills)
	r.Extra = fmt.Sprintf("side_effect_rows=%d distinct=%d (exactly once)", total, distinct)
	report(t, r, lost)
}

// TestConsumerCrashKafka kills a Kafka consumer process mid-stream three
// times. Every message is delivered at least once; the side effect,
// written in one transaction with the dedupe mark, exactly once.
func TestConsumerCrashKafka(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(4, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var topic string
	testCrash(t, "kafka", brokers[0], pub, func(tp, _ string) { topic = tp })
	deleteKafkaTopics(t, pub, topic)
}

// TestConsumerCrashAMQP does the same on RabbitMQ.
func TestConsumerCrashAMQP(t *testing.T) {
	raw := testenv.NeedAMQP(t)
	pub, err := amqp.NewPublisher(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	testCrash(t, "amqp", raw, pub, func(topic, group string) {
		deleteAMQP(t, raw, topic, topic+"."+group)
		if err := pub.Declare(context.Background(), topic, group); err != nil {
			t.Fatal(err)
		}
	})
}
