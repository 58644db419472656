package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests talk to the real brokers. Without them they skip; with
// FERRY_REQUIRE_BROKERS=1 (make test, CI) they fail, so a broker that did
// not come up is reported here first, by name.

func TestKafkaBroker(t *testing.T) {
	brokers := NeedKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	bs, err := adm.ListBrokers(ctx)
	if err != nil {
		t.Fatalf("kafka %v: list brokers: %v", brokers, err)
	}
	if len(bs) == 0 {
		t.Fatalf("kafka %v: no brokers in metadata", brokers)
	}
	for _, b := range bs {
		t.Logf("kafka broker %d at %s:%d", b.NodeID, b.Host, b.Port)
	}
}

func TestAMQPBroker(t *testing.T) {
	url := NeedAMQP(t)
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("amqp dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("amqp channel: %v", err)
	}
	defer ch.Close()
	// A server-named exclusive queue proves the channel really works.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("amqp queue declare: %v", err)
	}
	t.Logf("rabbitmq %v: declared %s", conn.Properties["version"], q.Name)
}

func TestPostgresServer(t *testing.T) {
	dsn := NeedPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres connect: %v", err)
	}
	defer conn.Close(context.Background())
	var one int
	var version string
	if err := conn.QueryRow(ctx, "SELECT 1, version()").Scan(&one, &version); err != nil {
		t.Fatalf("postgres SELECT 1: %v", err)
	}
	if one != 1 {
		t.Fatalf("SELECT 1 returned %d", one)
	}
	t.Logf("postgres: %s", version)
}
