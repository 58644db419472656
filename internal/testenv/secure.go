package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The secure listeners scripts/services.sh starts beside the plain ones,
// with a certificate for 127.0.0.1 and localhost signed by a throwaway CA
// (FERRY_TLS_CA, default ~/.cache/ferry/tls/ca.pem):
//
//	FERRY_KAFKA_SASL_BROKERS  Kafka SASL_SSL (SCRAM-SHA-512), default 127.0.0.1:9094
//	FERRY_KAFKA_SCRAM_USER    default ferry
//	FERRY_KAFKA_SCRAM_PASSWORD default ferry-scram-secret (a test secret)
//	FERRY_AMQPS_URL           RabbitMQ TLS, default amqps://guest:guest@127.0.0.1:5671/
const (
	DefaultKafkaSASLBrokers  = "127.0.0.1:9094"
	DefaultKafkaSCRAMUser    = "ferry"
	DefaultKafkaSCRAMPasswd  = "ferry-scram-secret"
	DefaultAMQPSURL          = "amqps://guest:guest@127.0.0.1:5671/"
	scramIterations          = 8192
	secureSetupTimeout       = 30 * time.Second
	defaultCARelativeToCache = "ferry/tls/ca.pem"
)

// KafkaSecure is the Kafka SASL_SSL listener and the SCRAM user on it.
type KafkaSecure struct {
	Brokers  []string // SASL_SSL listener addresses
	User     string   // SCRAM-SHA-512 user
	Password string   // its password (a test secret)
	CAFile   string   // PEM file of the CA that signed the broker's certificate
}

// CAFile returns FERRY_TLS_CA or the CA scripts/services.sh makes.
func CAFile() string {
	if f := os.Getenv("FERRY_TLS_CA"); f != "" {
		return f
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, defaultCARelativeToCache)
}

// TLSConfig returns a client TLS configuration that trusts only the test
// CA (CAFile); it fails t when the file cannot be read.
func TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(CAFile())
	if err != nil {
		t.Fatalf("testenv: the test CA (made by scripts/services.sh; FERRY_TLS_CA): %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("testenv: no certificate in %s", CAFile())
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// NeedKafkaSASL returns Kafka's SASL_SSL listener if it accepts a TCP
// connection (otherwise it skips or fails t, like NeedKafka). It makes
// sure the SCRAM user exists, through the plaintext listener (a data
// directory formatted before services.sh created the user at format time
// lacks it).
func NeedKafkaSASL(t testing.TB) KafkaSecure {
	t.Helper()
	plain := NeedKafka(t)
	s := KafkaSecure{
		Brokers:  []string{getenv("FERRY_KAFKA_SASL_BROKERS", DefaultKafkaSASLBrokers)},
		User:     getenv("FERRY_KAFKA_SCRAM_USER", DefaultKafkaSCRAMUser),
		Password: getenv("FERRY_KAFKA_SCRAM_PASSWORD", DefaultKafkaSCRAMPasswd),
		CAFile:   CAFile(),
	}
	if err := dial(s.Brokers[0]); err != nil {
		unavailable(t, "Kafka's SASL_SSL listener", "FERRY_KAFKA_SASL_BROKERS", err)
		return s
	}
	if err := ensureSCRAMUser(plain, s.User, s.Password); err != nil {
		t.Fatalf("testenv: SCRAM user %q on Kafka: %v", s.User, err)
	}
	return s
}

// ensureSCRAMUser creates (or resets) user's SCRAM-SHA-512 password when
// the broker does not list one, and waits until it does.
func ensureSCRAMUser(brokers []string, user, password string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), secureSetupTimeout)
	defer cancel()
	has := func() (bool, error) {
		d, err := adm.DescribeUserSCRAMs(ctx, user)
		if err != nil {
			return false, err
		}
		for _, ci := range d[user].CredInfos {
			if ci.Mechanism == kadm.ScramSha512 {
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := has(); err != nil || ok {
		return err
	}
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
		User: user, Mechanism: kadm.ScramSha512, Iterations: scramIterations, Password: password,
	}})
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("creating it: %w", r.Err)
		}
	}
	for {
		if ok, err := has(); err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not listed %v after creating it", secureSetupTimeout)
		case <-time.After(100 * time.Millisecond): // polling the broker's metadata
		}
	}
}

// NeedAMQPS returns RabbitMQ's TLS URL if its port accepts a TCP
// connection; otherwise it skips (or fails) t, like NeedAMQP.
func NeedAMQPS(t testing.TB) string {
	t.Helper()
	useService(t, "rabbitmq")
	raw := getenv("FERRY_AMQPS_URL", DefaultAMQPSURL)
	addr, err := hostPort(raw, "5672", "5671")
	if err == nil {
		err = dial(addr)
	}
	if err != nil {
		unavailable(t, "RabbitMQ's TLS listener", "FERRY_AMQPS_URL", err)
	}
	return raw
}
