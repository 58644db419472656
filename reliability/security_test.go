package reliability_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

const secret = "s3cr3t-Pa55"

// TestAMQPSToPlainPortFailsClearly dials an amqps:// URL (TLS) at the
// broker's plain AMQP port: the constructor must fail, say it is a TLS
// problem, and not show the password.
func TestAMQPSToPlainPortFailsClearly(t *testing.T) {
	raw := testenv.NeedAMQP(t)
	u := amqpTarget(t, raw)
	u.Scheme = "amqps"
	u.User = url.UserPassword("guest", secret)
	done := make(chan error, 1)
	go func() {
		p, err := amqp.NewPublisher(u.String())
		if err == nil {
			p.Close()
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("NewPublisher with amqps:// to a plain port did not return within 30s")
	}
	if err == nil {
		t.Fatal("NewPublisher with amqps:// to a plain AMQP port succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, secret) {
		t.Errorf("error shows the password: %v", err)
	}
	if !strings.Contains(msg, "tls") && !strings.Contains(msg, "TLS") {
		t.Errorf("error does not say TLS failed: %v", err)
	}
	if !strings.Contains(msg, "amqps://guest:") {
		t.Errorf("error does not name the (redacted) URL: %v", err)
	}
	t.Logf("amqps:// to a plain port: %v", err)
}

// TestAMQPWrongPasswordNotInError checks the redaction with a password the
// broker refuses.
func TestAMQPWrongPasswordNotInError(t *testing.T) {
	raw := testenv.NeedAMQP(t)
	u := amqpTarget(t, raw)
	u.User = url.UserPassword("guest", secret)
	_, err := amqp.NewPublisher(u.String())
	if err == nil {
		t.Fatal("NewPublisher with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error shows the password: %v", err)
	}
}

// TestKafkaSecurityOptionsPassThrough shows that TLS and SASL/SCRAM options
// given with kafka.WithClientOptions reach franz-go: against the test
// broker's PLAINTEXT listener both make Publish fail (a TLS handshake
// error; a SASL error), where the same publisher without them succeeds,
// and the SCRAM password appears in no error. The positive check against
// a TLS or SASL listener is manual (RELIABILITY.md).
func TestKafkaSecurityOptionsPassThrough(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	topic := name("rel_security")
	plain, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	deleteKafkaTopics(t, plain, topic)
	if err := plain.Publish(context.Background(), topic, &message.Message{Payload: []byte("x")}); err != nil {
		t.Fatalf("plain publish: %v", err)
	}
	for _, c := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"tls", []kgo.Opt{kgo.DialTLSConfig(&tls.Config{ServerName: "localhost"})}},
		{"sasl-scram", []kgo.Opt{kgo.SASL(scram.Auth{User: "ferry", Pass: secret}.AsSha256Mechanism())}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := kafka.NewPublisher(brokers, kafka.WithClientOptions(append(c.opts,
				kgo.RequestRetries(1), kgo.RetryTimeout(5*time.Second), kgo.DialTimeout(3*time.Second))...))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err = p.Publish(ctx, topic, &message.Message{Payload: []byte("x")})
			if err == nil {
				t.Fatalf("publish with %s options to a PLAINTEXT listener succeeded: the options were not passed through", c.name)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Logf("publish with %s options: %v (timed out)", c.name, err)
			} else {
				t.Logf("publish with %s options: %v", c.name, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the SASL password: %v", err)
			}
		})
	}
}
