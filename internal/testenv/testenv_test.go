package testenv

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestDefaults(t *testing.T) {
	t.Setenv("FERRY_KAFKA_BROKERS", "")
	t.Setenv("FERRY_AMQP_URL", "")
	t.Setenv("FERRY_POSTGRES_DSN", "")
	t.Setenv("FERRY_REQUIRE_BROKERS", "")
	if got := KafkaBrokers(); !reflect.DeepEqual(got, []string{"127.0.0.1:9092"}) {
		t.Errorf("KafkaBrokers() = %v", got)
	}
	if got := AMQPURL(); got != "amqp://guest:guest@127.0.0.1:5672/" {
		t.Errorf("AMQPURL() = %q", got)
	}
	if got := PostgresDSN(); got != "postgres://ferry:ferry@127.0.0.1:5432/ferry?sslmode=disable" {
		t.Errorf("PostgresDSN() = %q", got)
	}
	if RequireBrokers() {
		t.Error("RequireBrokers() with FERRY_REQUIRE_BROKERS unset")
	}
	for _, s := range []string{"kafka", "rabbitmq", "postgres"} {
		if !managedByScript(s) {
			t.Errorf("managedByScript(%q) = false with default addresses", s)
		}
	}
}

func TestOverrides(t *testing.T) {
	t.Setenv("FERRY_KAFKA_BROKERS", " k1:9092, k2:9093 ,,")
	t.Setenv("FERRY_AMQP_URL", "amqps://u:p@mq.example:5999/vh")
	t.Setenv("FERRY_REQUIRE_BROKERS", "1")
	if got := KafkaBrokers(); !reflect.DeepEqual(got, []string{"k1:9092", "k2:9093"}) {
		t.Errorf("KafkaBrokers() = %v", got)
	}
	if got := AMQPURL(); got != "amqps://u:p@mq.example:5999/vh" {
		t.Errorf("AMQPURL() = %q", got)
	}
	if !RequireBrokers() {
		t.Error("RequireBrokers() = false with FERRY_REQUIRE_BROKERS=1")
	}
	if managedByScript("kafka") || managedByScript("rabbitmq") || !managedByScript("postgres") {
		t.Error("managedByScript does not follow the overrides")
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:guest@127.0.0.1:5672/": "127.0.0.1:5672",
		"amqp://h/":                          "h:5672",
		"amqps://h/vh":                       "h:5671",
		"amqp://[::1]/":                      "[::1]:5672",
	} {
		got, err := hostPort(in, "5672", "5671")
		if err != nil || got != want {
			t.Errorf("hostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := hostPort("amqp:///", "5672", "5671"); err == nil {
		t.Error("hostPort without host: no error")
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "services.sh")); err != nil {
		t.Errorf("RepoRoot() = %s, which has no scripts/services.sh: %v", root, err)
	}
}

// fakeTB records whether Skip or Fatal was called.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg = format
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = format
}

func TestUnreachableSkipsOrFails(t *testing.T) {
	// Port 1 on loopback: nothing listens there, the dial is refused at once.
	t.Setenv("FERRY_KAFKA_BROKERS", "127.0.0.1:1")
	t.Setenv("FERRY_REQUIRE_BROKERS", "")
	f := &fakeTB{TB: t}
	NeedKafka(f)
	if !f.skipped || f.failed {
		t.Errorf("without FERRY_REQUIRE_BROKERS: skipped=%v failed=%v", f.skipped, f.failed)
	}
	t.Setenv("FERRY_REQUIRE_BROKERS", "1")
	f = &fakeTB{TB: t}
	NeedKafka(f)
	if !f.failed {
		t.Errorf("with FERRY_REQUIRE_BROKERS=1: failed=%v", f.failed)
	}
}
