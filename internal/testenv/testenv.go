package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults: what scripts/services.sh starts.
const (
	DefaultKafkaBrokers = "127.0.0.1:9092"
	DefaultAMQPURL      = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultPostgresDSN  = "postgres://ferry:ferry@127.0.0.1:5432/ferry?sslmode=disable"
)

// dialTimeout bounds each reachability probe.
const dialTimeout = 2 * time.Second

// KafkaBrokers returns FERRY_KAFKA_BROKERS split on commas, or the default.
func KafkaBrokers() []string {
	var out []string
	for _, b := range strings.Split(getenv("FERRY_KAFKA_BROKERS", DefaultKafkaBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		out = []string{DefaultKafkaBrokers}
	}
	return out
}

// AMQPURL returns FERRY_AMQP_URL or the default.
func AMQPURL() string { return getenv("FERRY_AMQP_URL", DefaultAMQPURL) }

// PostgresDSN returns FERRY_POSTGRES_DSN or the default.
func PostgresDSN() string { return getenv("FERRY_POSTGRES_DSN", DefaultPostgresDSN) }

// RequireBrokers reports whether FERRY_REQUIRE_BROKERS=1 (or true): then a
// missing broker fails the test rather than skipping it.
func RequireBrokers() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("FERRY_REQUIRE_BROKERS"))) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// NeedKafka returns the Kafka seed brokers if at least one accepts a TCP
// connection; otherwise it skips (or fails, see RequireBrokers) t.
func NeedKafka(t testing.TB) []string {
	t.Helper()
	useService(t, "kafka")
	brokers := KafkaBrokers()
	var errs []error
	for _, b := range brokers {
		err := dial(b)
		if err == nil {
			return brokers
		}
		errs = append(errs, err)
	}
	unavailable(t, "Kafka", "FERRY_KAFKA_BROKERS", errors.Join(errs...))
	return nil
}

// NeedAMQP returns the AMQP URL if its host accepts a TCP connection;
// otherwise it skips (or fails) t.
func NeedAMQP(t testing.TB) string {
	t.Helper()
	useService(t, "rabbitmq")
	u := AMQPURL()
	addr, err := hostPort(u, "5672", "5671")
	if err == nil {
		err = dial(addr)
	}
	if err != nil {
		unavailable(t, "RabbitMQ", "FERRY_AMQP_URL", err)
		return ""
	}
	return u
}

// NeedPostgres returns the PostgreSQL DSN if the server answers a ping with
// those credentials; otherwise it skips (or fails) t.
func NeedPostgres(t testing.TB) string {
	t.Helper()
	useService(t, "postgres")
	dsn := PostgresDSN()
	if err := pingPostgres(dsn); err != nil {
		unavailable(t, "PostgreSQL", "FERRY_POSTGRES_DSN", err)
		return ""
	}
	return dsn
}

// pingPostgres connects with pgx's own API (no database/sql, no pool).
func pingPostgres(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*dialTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// RestartService stops and starts one service managed by
// scripts/services.sh ("kafka", "rabbitmq" or "postgres") and returns when
// it is ready again. Existing connections are cut: fault tests use it to
// check reconnection and redelivery.
func RestartService(t testing.TB, name string) {
	t.Helper()
	if !managedByScript(name) {
		msg := fmt.Sprintf("testenv: cannot restart %s: its address is set by the environment, not started by scripts/services.sh", name)
		if RequireBrokers() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	restartMu.Lock()
	defer restartMu.Unlock()
	// Wait until no other test process uses the service (see lock.go).
	release := exclusive(t, name)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "services.sh"), "restart", name)
	cmd.Dir = root
	// A daemon that kept the output pipe open must not hold the
	// restart (and the exclusive lock) past the script's end.
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: services.sh restart %s failed after %v: %v\n%s", name, time.Since(start).Round(time.Millisecond), err, out)
	}
	t.Logf("testenv: restarted %s in %v", name, time.Since(start).Round(time.Millisecond))
}

// restartMu keeps the tests of one package from restarting services at
// once; the service locks (lock.go) do the same across packages, which
// run in separate processes. services.sh itself is not meant to be run
// concurrently for the same service.
var restartMu sync.Mutex

// managedByScript reports whether the address of service name is the
// default one that services.sh starts.
func managedByScript(name string) bool {
	switch name {
	case "kafka":
		return getenv("FERRY_KAFKA_BROKERS", DefaultKafkaBrokers) == DefaultKafkaBrokers
	case "rabbitmq":
		return AMQPURL() == DefaultAMQPURL
	case "postgres":
		return PostgresDSN() == DefaultPostgresDSN
	}
	return false
}

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func unavailable(t testing.TB, what, envVar string, err error) {
	t.Helper()
	if RequireBrokers() {
		t.Fatalf("%s unreachable (%v) and FERRY_REQUIRE_BROKERS=1: run `make test` (or `bash scripts/services.sh up`), or set %s", what, err, envVar)
		return
	}
	t.Skipf("%s unreachable (%v): run `make test` to start the real brokers, or set %s", what, err, envVar)
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// hostPort extracts host:port from a URL, with the default port for its
// scheme (plain or TLS).
func hostPort(raw, plainPort, tlsPort string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("no host in %q", redact(u))
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := plainPort
	if strings.HasSuffix(u.Scheme, "s") {
		port = tlsPort
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

func redact(u *url.URL) string { return u.Redacted() }

func getenv(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}
