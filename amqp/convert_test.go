package amqp

import (
	"errors"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/message"
)

func TestHeaderString(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"string", "s", "s"},
		{"bytes", []byte("b"), "b"},
		{"void", nil, ""},
		{"bool", false, "false"},
		{"int8", int8(-8), "-8"},
		{"int16", int16(16), "16"},
		{"int32", int32(32), "32"},
		{"int64", int64(1) << 40, "1099511627776"},
		{"uint8", uint8(200), "200"},
		{"float32", float32(0.5), "0.5"},
		{"float64", 2.25, "2.25"},
		{"timestamp in UTC", ts, "2024-05-06T06:08:09Z"},
		{"decimal", amqp091.Decimal{Scale: 2, Value: 12345}, "123.45"},
		{"array", []any{int32(1), "a", true}, `[1,"a",true]`},
		{"x-death", []any{amqp091.Table{"count": int64(2), "time": ts, "routing-keys": []any{"k"}}},
			`[{"count":2,"routing-keys":["k"],"time":"2024-05-06T06:08:09Z"}]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := HeaderString(c.in); got != c.want {
				t.Errorf("HeaderString(%#v) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestPublishingAndBack(t *testing.T) {
	cfg, err := newSubscriberConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1700000000456)
	m := &message.Message{ID: "i", Key: "k", Payload: []byte("p"), Headers: map[string]string{"h": "v", "ferry-key": "spoof"}, Time: at}
	pub := cfg.publishing(m)
	if pub.MessageId != "i" || pub.DeliveryMode != amqp091.Persistent || !pub.Timestamp.Equal(at) || pub.Headers["ferry-key"] != "k" || pub.Headers[TimeHeader] != at.UnixMilli() {
		t.Fatalf("publishing %+v", pub)
	}
	if m.Headers["ferry-key"] != "spoof" {
		t.Error("publishing modified the caller's headers")
	}
	d := &amqp091.Delivery{MessageId: pub.MessageId, Headers: pub.Headers, Body: pub.Body, Timestamp: pub.Timestamp.Truncate(time.Second), DeliveryTag: 7}
	got := cfg.toMessage("t", "g", d)
	if got.ID != "i" || got.Key != "k" || string(got.Payload) != "p" || !got.Time.Equal(at) || len(got.Headers) != 1 || got.Headers["h"] != "v" {
		t.Fatalf("round trip %+v", got)
	}
	if got.Delivery != (message.Delivery{Topic: "t", Group: "g", Attempt: 1, Partition: -1, Offset: -1, DeliveryTag: 7}) {
		t.Errorf("delivery %+v", got.Delivery)
	}
}

func TestAttemptFromBroker(t *testing.T) {
	cfg, _ := newSubscriberConfig(nil)
	cases := []struct {
		name string
		d    amqp091.Delivery
		want int
	}{
		{"first", amqp091.Delivery{}, 1},
		{"redelivered flag", amqp091.Delivery{Redelivered: true}, 2},
		{"quorum delivery count", amqp091.Delivery{Redelivered: true, Headers: amqp091.Table{"x-delivery-count": int64(4)}}, 5},
		{"delivery count as long", amqp091.Delivery{Headers: amqp091.Table{"x-delivery-count": int32(1)}}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := cfg.toMessage("t", "g", &c.d).Delivery.Attempt; got != c.want {
				t.Errorf("Attempt = %d, want %d", got, c.want)
			}
		})
	}
}

func TestValidateTopic(t *testing.T) {
	for _, ok := range []string{"orders", "a.b-c_d:e", strings.Repeat("x", 255), "AMQ.upper-is-fine"} {
		if err := ValidateTopic(ok); err != nil {
			t.Errorf("ValidateTopic(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "amq.topic", strings.Repeat("x", 256), "sp ace", "slash/", "é", "star*"} {
		if err := ValidateTopic(bad); !errors.Is(err, message.ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", bad, err)
		}
	}
}

func TestTopologyDefaults(t *testing.T) {
	cfg, _ := newSubscriberConfig(nil)
	if cfg.bindKey() != "#" || cfg.queueDeclareArgs() != nil || cfg.prefetchCount() != DefaultMinPrefetch {
		t.Errorf("defaults: bind %q args %v prefetch %d", cfg.bindKey(), cfg.queueDeclareArgs(), cfg.prefetchCount())
	}
	if q, err := cfg.queueFor("orders", "billing"); q != "orders.billing" || err != nil {
		t.Errorf("queueFor = %q, %v", q, err)
	}
	cfg, _ = newSubscriberConfig([]SubscriberOption{WithExchangeKind(ExchangeFanout), WithQuorumQueues(), WithDeadLetterExchange("dlx", "dead"),
		WithQueueArgs(amqp091.Table{"x-max-length": int64(10)}), WithConcurrency(20),
		WithQueueName(func(topic, group string) string { return group + "@" + topic })})
	args := cfg.queueDeclareArgs()
	if cfg.bindKey() != "" || args["x-queue-type"] != "quorum" || args["x-dead-letter-exchange"] != "dlx" ||
		args["x-dead-letter-routing-key"] != "dead" || args["x-max-length"] != int64(10) || cfg.prefetchCount() != 320 {
		t.Errorf("options: bind %q args %v prefetch %d", cfg.bindKey(), args, cfg.prefetchCount())
	}
	if q, _ := cfg.queueFor("t", "g"); q != "g@t" {
		t.Errorf("queue name %q", q)
	}
	if _, err := cfg.queueFor(strings.Repeat("x", 255), "g"); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("long queue name: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	red, pw := redactURL("amqp://user:s3cret@host:5672/vh")
	if strings.Contains(red, "s3cret") || pw != "s3cret" {
		t.Errorf("redactURL = %q, %q", red, pw)
	}
	c := &conn{password: "s3cret"}
	inner := errors.New("auth s3cret refused")
	err := c.scrub(inner)
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, inner) {
		t.Errorf("scrub = %v", err)
	}
}
