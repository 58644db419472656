package reliability_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// Security against the real brokers: Kafka's SASL_SSL listener
// (SCRAM-SHA-512) and RabbitMQ's TLS listener, both started by
// scripts/services.sh with a certificate from a throwaway CA.

// failFast bounds how long a misconfigured client may take to fail: well
// under the publish context, so a hang (retrying until the context ends)
// is told apart from a clear, early failure.
const (
	failFastCtx = 30 * time.Second
	secureMsgs  = 20
)

// untrustedTLS trusts a freshly made CA that signed nothing the brokers
// present.
func untrustedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the ferry test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// kafkaSecureOpts are the client options for the SASL_SSL listener.
func kafkaSecureOpts(tc *tls.Config, user, password string) kafka.Option {
	var opts []kgo.Opt
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if password != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
	}
	return kafka.WithClientOptions(opts...)
}

// roundTrip publishes secureMsgs messages and waits for the subscriber to
// get each of them.
func roundTrip(t *testing.T, pub message.Publisher, sub message.Subscriber, topic string) {
	t.Helper()
	got := make(chan string, secureMsgs*2)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.Subscribe(message.WithReady(ctx, func() { close(ready) }), topic,
			func(_ context.Context, m *message.Message) error { got <- string(m.Payload); return nil })
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("Subscribe did not return within 60s of cancel")
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Subscribe returned before it was ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("subscriber not ready within 90s")
	}
	want := map[string]bool{}
	for i := range secureMsgs {
		p := fmt.Sprintf("secure-%d", i)
		want[p] = true
		pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := pub.Publish(pctx, topic, &message.Message{Payload: []byte(p)})
		pcancel()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	deadline := time.After(60 * time.Second)
	for len(want) > 0 {
		select {
		case p := <-got:
			delete(want, p)
		case err := <-done:
			t.Fatalf("Subscribe returned with %d messages missing: %v", len(want), err)
		case <-deadline:
			t.Fatalf("%d of %d messages not consumed within 60s", len(want), secureMsgs)
		}
	}
}

// checkClearError fails t unless err is non-nil, came before the context
// ended, names its cause (one of words, case-insensitive) and hides
// secret.
func checkClearError(t *testing.T, what string, err error, secret string, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded", what)
	}
	msg := err.Error()
	t.Logf("%s: %v", what, err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: timed out instead of failing with its cause: %v", what, err)
	}
	if secret != "" && strings.Contains(msg, secret) {
		t.Errorf("%s: the error shows the password: %v", what, err)
	}
	low := strings.ToLower(msg)
	for _, w := range words {
		if strings.Contains(low, strings.ToLower(w)) {
			return
		}
	}
	t.Errorf("%s: the error names none of %q: %v", what, words, err)
}

func TestKafkaSASLSSLPublishConsume(t *testing.T) {
	s := testenv.NeedKafkaSASL(t)
	topic := name("rel_sasl")
	sec := kafkaSecureOpts(testenv.TLSConfig(t), s.User, s.Password)
	pub, err := kafka.NewPublisher(s.Brokers, sec)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deleteKafkaTopics(t, pub, topic)
	sub, err := kafka.NewSubscriber(s.Brokers, sec, kafka.WithGroup(name("rel_sasl_g")),
		kafka.WithStartOffset(kafka.StartEarliest))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	roundTrip(t, pub, sub, topic)
}

// kafkaPublishErr publishes once with sec to the SASL_SSL listener and
// returns the error.
func kafkaPublishErr(t *testing.T, brokers []string, sec kafka.Option) error {
	t.Helper()
	pub, err := kafka.NewPublisher(brokers, sec, kafka.WithoutTopicCreation())
	if err != nil {
		return err
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), failFastCtx)
	defer cancel()
	return pub.Publish(ctx, name("rel_sasl_bad"), &message.Message{Payload: []byte("x")})
}

func TestKafkaSASLSSLMisconfiguredFailsClearly(t *testing.T) {
	s := testenv.NeedKafkaSASL(t)
	const wrong = "n0t-the-Pa55word"
	t.Run("wrong-password", func(t *testing.T) {
		err := kafkaPublishErr(t, s.Brokers, kafkaSecureOpts(testenv.TLSConfig(t), s.User, wrong))
		checkClearError(t, "publish with a wrong SCRAM password", err, wrong, "authentication", "SASL")
		if strings.Contains(fmt.Sprint(err), s.Password) {
			t.Errorf("the error shows the real password")
		}
	})
	t.Run("untrusted-certificate", func(t *testing.T) {
		err := kafkaPublishErr(t, s.Brokers, kafkaSecureOpts(untrustedTLS(t), s.User, s.Password))
		checkClearError(t, "publish trusting another CA", err, s.Password, "certificate", "x509")
	})
	t.Run("plaintext-client", func(t *testing.T) {
		err := kafkaPublishErr(t, s.Brokers, kafkaSecureOpts(nil, s.User, s.Password))
		checkClearError(t, "plaintext publish to the SASL_SSL port", err, s.Password, "TLS", "SSL")
	})
}

func amqpsConfig(tc *tls.Config) amqp.Option {
	return amqp.WithConfig(amqp091.Config{TLSClientConfig: tc})
}

func TestAMQPSPublishConsume(t *testing.T) {
	raw := testenv.NeedAMQPS(t)
	tc := testenv.TLSConfig(t)
	topic := name("rel_amqps")
	pub, err := amqp.NewPublisher(raw, amqpsConfig(tc))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := amqp.NewSubscriber(raw, amqpsConfig(tc), amqp.WithGroup(name("rel_amqps_g")))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	roundTrip(t, pub, sub, topic)
}

func TestAMQPSMisconfiguredFailsClearly(t *testing.T) {
	raw := testenv.NeedAMQPS(t)
	const wrong = "n0t-the-Pa55word"
	newPub := func(rawURL string, opts ...amqp.PublisherOption) error {
		done := make(chan error, 1)
		go func() {
			p, err := amqp.NewPublisher(rawURL, append(opts, amqp.WithDialTimeout(10*time.Second))...)
			if err == nil {
				p.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(failFastCtx):
			t.Fatalf("NewPublisher(%s) did not return within %v", rawURL, failFastCtx)
			return nil
		}
	}
	t.Run("wrong-password", func(t *testing.T) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), wrong)
		err = newPub(u.String(), amqpsConfig(testenv.TLSConfig(t)))
		checkClearError(t, "amqps:// with a wrong password", err, wrong, "password", "ACCESS_REFUSED", "403")
	})
	t.Run("untrusted-certificate", func(t *testing.T) {
		err := newPub(raw, amqpsConfig(untrustedTLS(t)))
		checkClearError(t, "amqps:// trusting another CA", err, "", "certificate", "x509")
	})
	t.Run("plaintext-client", func(t *testing.T) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.Scheme = "amqp"
		u.User = url.UserPassword(u.User.Username(), wrong)
		err = newPub(u.String())
		checkClearError(t, "amqp:// (plain) to the TLS port", err, wrong, "amqps://")
	})
}
