// Package examples_test builds every example program and runs it, on the
// in-memory broker always and on Kafka and RabbitMQ when they are up (or
// required by FERRY_REQUIRE_BROKERS=1), checking exit codes and key output
// lines, so that the examples cannot rot.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/internal/testenv"
)

// programs are the example directories, built once by TestMain.
var programs = []string{"orders", "retry-dlq", "idempotent-consumer", "ordered-concurrency", "competing-consumers", "outbox"}

// binDir holds the built examples.
var binDir string

// runTimeout bounds one example run; the examples' own -timeout is a bit
// shorter so that they report what they were waiting for.
const (
	runTimeout     = 3 * time.Minute
	exampleTimeout = "150s"
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "ferry-examples-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		args := []string{"build", "-o", dir + string(filepath.Separator)}
		if raceEnabled {
			// The examples are concurrent programs: run them under the
			// race detector too.
			args = append(args, "-race")
		}
		for _, p := range programs {
			args = append(args, "./"+p)
		}
		cmd := exec.Command("go", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
			return 1
		}
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				return 1
			}
		}
		return code
	}())
}

// result is one finished example run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs example prog with args and returns its output and exit code.
func run(t *testing.T, prog string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, prog), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("%s %q: %v", prog, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not finish within %v\nstdout:\n%s\nstderr:\n%s", prog, args, runTimeout, r.stdout, r.stderr)
	}
	return r
}

// ok runs prog, requires exit 0, and returns its stdout.
func ok(t *testing.T, prog string, args ...string) string {
	t.Helper()
	r := run(t, prog, append(args, "-timeout", exampleTimeout)...)
	if r.code != 0 {
		t.Fatalf("%s %q: exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", prog, args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// mustMatch requires each pattern (a regexp matched against one line) to
// match some line of out, and returns the submatches of the last pattern.
func mustMatch(t *testing.T, out string, patterns ...string) []string {
	t.Helper()
	var last []string
	for _, p := range patterns {
		re := regexp.MustCompile("(?m)^" + p + "$")
		last = re.FindStringSubmatch(out)
		if last == nil {
			t.Errorf("no output line matches %q", p)
		}
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", out)
	}
	return last
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The summary of the orders scenario: the same on every broker.
const ordersSummary = `summary: placed=20 published=21 notified=20 reserved=19 dead-lettered=1 dlt-reported=1 duplicates-skipped=3 out-of-order=0 analytics-orders=20 analytics-revenue=$1971.79`

// topicRE matches a topic name with the run-ID suffix real brokers get.
func topicRE(name string) string { return regexp.QuoteMeta(name) + `(-r[0-9a-f]{6})?` }

func checkOrders(t *testing.T, brokerURL string) {
	out := ok(t, "orders", "-broker", brokerURL)
	mustMatch(t, out,
		`order-service\s+placed o-1001 for alice \(#1\): .*`,
		`order-service\s+sent OrderPlaced/o-1007 again, same message ID .*`,
		// The duplicate is skipped by every service's dedupe.
		`notification-service\s+skipped OrderPlaced/o-1007: already processed \(a duplicate\)`,
		`inventory-service\s+skipped OrderPlaced/o-1007: already processed \(a duplicate\)`,
		`analytics-service\s+skipped OrderPlaced/o-1007: already processed \(a duplicate\)`,
		// The poison order: retried, then dead-lettered, then reported.
		`inventory-service\s+OrderPlaced/o-1013 attempt 1 of 3 failed: cannot reserve o-1013: unknown SKU "LAMP-RETRO" \(retrying\)`,
		`inventory-service\s+OrderPlaced/o-1013 attempt 2 of 3 failed: .* \(retrying\)`,
		`inventory-service\s+OrderPlaced/o-1013 attempt 3 of 3 failed: .*; gave up, sent to `+topicRE("order-events")+`\.DLT`,
		`dlt-monitor\s+OrderPlaced/o-1013 from `+topicRE("order-events")+`, group inventory-service, 3 attempts: cannot reserve o-1013: unknown SKU "LAMP-RETRO"`,
		`dlt-monitor\s+error headers: .*ferry-dlt-attempts ferry-dlt-error .*ferry-dlt-original-group.* ferry-dlt-original-topic`,
		// Per-customer order, for both services; o-1013 is not reserved.
		`  carol\s+notified o-1003 o-1008 o-1013 o-1018\s+reserved o-1003 o-1008 o-1018`,
		`  bob\s+notified o-1002 o-1007 o-1012 o-1017\s+reserved o-1002 o-1007 o-1012 o-1017`,
		regexp.QuoteMeta(ordersSummary),
	)
	if n := strings.Count(out, "skipped OrderPlaced/"); n != 3 {
		t.Errorf("%d duplicate skips reported, want 3 (one per service)\n%s", n, out)
	}
}

func checkRetryDLQ(t *testing.T, brokerURL string) {
	out := ok(t, "retry-dlq", "-broker", brokerURL)
	mustMatch(t, out,
		`payment-service\s+p-3 attempt 2 failed: card processor timeout \(retrying\)`,
		// The delay tiers: p-2 comes back from the first and is charged,
		// p-3 goes through both, then to the DLT with its history.
		`payment-service\s+p-2 attempt 3 failed: fraud check unavailable -> `+topicRE("payments")+`-retry-200 \(tier 1, due in 200ms; the payments behind it go on\)`,
		`payment-service\s+charged p-2: 99.00 \(attempt 4, back from tier 1\)`,
		`payment-service\s+p-3 attempt 4 failed: card processor timeout -> `+topicRE("payments")+`-retry-500 \(tier 2, due in 500ms; the payments behind it go on\)`,
		`payment-service\s+p-3 gave up after 5 attempt\(s\): card processor timeout -> `+topicRE("payments")+`\.DLT`,
		`payment-service\s+p-5 gave up after 1 attempt\(s\): invalid amount -5.00 -> `+topicRE("payments")+`\.DLT`,
		`ops\s+dead letter p-5 from `+topicRE("payments")+` \(group payment-service\): ferry-dlt-attempts=1 ferry-dlt-error="invalid amount -5.00"`,
		`ops\s+dead letter p-3 from `+topicRE("payments")+` \(group payment-service\): ferry-dlt-attempts=5 ferry-dlt-error="card processor timeout" ferry-retry-tier=2`,
		`result: charged=5 dead-lettered=2 replayed=1 \(p-3 charged after replay; p-5 stays on `+topicRE("payments")+`\.DLT\)`,
	)
	if strings.Contains(out, "charged p-5") {
		t.Errorf("the invalid payment p-5 was charged:\n%s", out)
	}
	if strings.Contains(out, "p-5 attempt") || strings.Contains(out, "p-2 gave up") {
		t.Errorf("p-5 (permanent) was retried or p-2 (back from its tier) was dead-lettered:\n%s", out)
	}
}

func checkIdempotent(t *testing.T, brokerURL string) {
	out := ok(t, "idempotent-consumer", "-broker", brokerURL)
	mustMatch(t, out,
		`wallet  d-3: crashed after the ledger write, before commit: rolled back, will be redelivered`,
		`wallet  credited d-3 to acct-1: \+\$40.00`,
		`result: deliveries=11 credited=5 duplicates-skipped=5 rolled-back=1 ledger-rows=5 balance=\$92.50 expected=\$92.50`,
	)
	if n := strings.Count(out, "wallet  credited "); n != 5 {
		t.Errorf("%d credits printed, want 5 (one per deposit)\n%s", n, out)
	}
}

func checkOrdered(t *testing.T, brokerURL string) {
	out := ok(t, "ordered-concurrency", "-broker", brokerURL)
	m := mustMatch(t, out,
		`result: messages=1000 keys=40 concurrency=16 max-parallel=(\d+) same-key-overlaps=0 order-violations=0 redelivered=40`)
	if p := atoi(t, m[1]); p < 2 || p > 16 {
		t.Errorf("max-parallel=%d, want 2..16: handlers of different keys must run concurrently, never more than 16", p)
	}
}

// outboxResult is the outbox example's last line on every broker and
// database.
const outboxResult = `result: placed=9 rolled-back=1 events-written=9 received=9 rolled-back-received=0 out-of-order=0 pending=0 order-rows=9`

func checkOutbox(t *testing.T, brokerURL string, args ...string) {
	out := ok(t, "outbox", append([]string{"-broker", brokerURL}, args...)...)
	mustMatch(t, out,
		`order-service    o-1004 for bob: payment declined after the writes: rolled back, no order row and no event`,
		`relay            not running yet: 3 events wait in the outbox, none lost`,
		`billing-service  OrderPlaced/o-1001 for alice: \$42.50 \(event [0-9a-f-]{36}\)`,
		regexp.QuoteMeta(outboxResult))
	if strings.Contains(out, "OrderPlaced/o-1004") {
		t.Errorf("the rolled-back order's event was published:\n%s", out)
	}
}

// TestOutboxPostgres runs the outbox example on PostgreSQL (-db), with
// the in-memory broker and, when they are up, Kafka and RabbitMQ.
func TestOutboxPostgres(t *testing.T) {
	dsn := testenv.NeedPostgres(t)
	t.Run("inmem", func(t *testing.T) { checkOutbox(t, "inmem://", "-db", dsn) })
	t.Run("kafka", func(t *testing.T) {
		checkOutbox(t, "kafka://"+strings.Join(testenv.NeedKafka(t), ","), "-db", dsn)
	})
	t.Run("amqp", func(t *testing.T) { checkOutbox(t, testenv.NeedAMQP(t), "-db", dsn) })
}

func checkCompeting(t *testing.T, brokerURL string) {
	out := ok(t, "competing-consumers", "-broker", brokerURL)
	m := mustMatch(t, out, `result: published=(\d+) member-1=(\d+) member-2=(\d+) total=(\d+) overlap=0`)
	published, m1, m2, total := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[3]), atoi(t, m[4])
	if published < 200 || m1 == 0 || m2 == 0 || m1+m2 != total || total != published {
		t.Errorf("published=%d member-1=%d member-2=%d total=%d: want both members busy and every job handled once", published, m1, m2, total)
	}
}

// examples maps each example to its check.
var examples = []struct {
	name  string
	check func(t *testing.T, brokerURL string)
}{
	{"orders", checkOrders},
	{"retry-dlq", checkRetryDLQ},
	{"idempotent-consumer", checkIdempotent},
	{"ordered-concurrency", checkOrdered},
	{"competing-consumers", checkCompeting},
	{"outbox", func(t *testing.T, brokerURL string) { checkOutbox(t, brokerURL) }},
}

func runAll(t *testing.T, brokerURL string) {
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) { ex.check(t, brokerURL) })
	}
}

func TestExamplesInMemory(t *testing.T) {
	t.Run("default broker", func(t *testing.T) {
		// No -broker flag: the in-memory broker.
		out := ok(t, "orders")
		mustMatch(t, out, `orders: inmem broker inmem://, topic order-events, dead letters to order-events.DLT`, regexp.QuoteMeta(ordersSummary))
	})
	runAll(t, "inmem://")
}

func TestExamplesKafka(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	runAll(t, "kafka://"+strings.Join(brokers, ","))
}

func TestExamplesRabbitMQ(t *testing.T) {
	runAll(t, testenv.NeedAMQP(t))
}

func TestBadBrokerURL(t *testing.T) {
	cases := []struct {
		name, url, want string
	}{
		{"unknown scheme", "nats://user:s3cret@127.0.0.1:4222", `unknown broker URL scheme "nats" in nats://user:xxxxx@127.0.0.1:4222; want kafka://`},
		{"no scheme", "127.0.0.1:9092", `does not start with a scheme; want kafka://`},
		{"kafka without brokers", "kafka://", `kafka://: an empty host in the host list`},
		{"unreachable RabbitMQ", "amqp://guest:s3cret@127.0.0.1:1/", `cannot reach RabbitMQ: amqp: dial amqp://guest:xxxxx@127.0.0.1:1/`},
		{"unreachable Kafka", "kafka://127.0.0.1:1", `cannot reach Kafka at kafka://127.0.0.1:1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, prog := range programs {
				r := run(t, prog, "-broker", c.url, "-timeout", "3s")
				if r.code == 0 {
					t.Errorf("%s -broker %s: exit code 0, want non-zero", prog, c.url)
				}
				if !strings.Contains(r.stderr, c.want) {
					t.Errorf("%s -broker %s: stderr %q does not contain %q", prog, c.url, r.stderr, c.want)
				}
				if strings.Contains(r.stdout+r.stderr, "s3cret") {
					t.Errorf("%s -broker %s: the password appears in the output:\n%s%s", prog, c.url, r.stdout, r.stderr)
				}
			}
		})
	}
}

// TestOrdersTimeout: a scenario that cannot finish in time exits 1 and says
// how far each service got.
func TestOrdersTimeout(t *testing.T) {
	r := run(t, "orders", "-pace", "200ms", "-timeout", "500ms")
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := regexp.MustCompile(`orders: timed out after 500ms waiting for the services: notification-service \d+/21, inventory-service \d+/21, analytics-service \d+/21, dlt-monitor \d+/\d+`)
	if !want.MatchString(r.stderr) {
		t.Errorf("stderr %q does not match %q", r.stderr, want)
	}
}

// TestOrdersInterrupt sends SIGINT while orders are flowing: the program
// drains and exits 0 without a summary.
func TestOrdersInterrupt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "orders"), "-pace", "300ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	signalled := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		// Orders are 300 ms apart: o-1002 is placed, the rest are not.
		if !signalled && strings.Contains(line, "placed o-1002") {
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if !signalled {
		t.Fatalf("never saw the line to interrupt at; err %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("after SIGINT: %v, want exit 0\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	got := out.String()
	mustMatch(t, got,
		`orders: interrupted: stopping the services \(running handlers finish first\)`,
		`orders: stopped cleanly after a graceful drain; progress: .*`)
	if strings.Contains(got, "summary:") || strings.Contains(got, "placed o-1020") {
		t.Errorf("the run went on after SIGINT:\n%s", got)
	}
}
