package connect_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ferrymsg/ferry/connect"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

const secret = "s3cret"

func open(t *testing.T, raw string, opts ...connect.Option) *connect.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := connect.Open(ctx, raw, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", connect.Redact(raw), err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// receive subscribes with sub to topic until n messages arrived and
// returns them.
func receive(t *testing.T, sub message.Subscriber, topic string, n int) []*message.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		got []*message.Message
	)
	err := sub.Subscribe(ctx, topic, func(_ context.Context, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if len(got) == n {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if len(got) != n {
		t.Fatalf("received %d messages before the deadline, want %d", len(got), n)
	}
	return got
}

func publish(t *testing.T, b *connect.Broker, topic string, keys ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := b.Publisher().Publish(ctx, topic, &message.Message{Key: k, Payload: []byte("p-" + k)}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

func TestInmemParametersTakeEffect(t *testing.T) {
	b := open(t, "inmem://?partitions=3&group=billing&retention=100")
	if b.Scheme() != connect.SchemeInmem || b.Inmem() == nil || b.String() != "inmem://?partitions=3&group=billing&retention=100" {
		t.Fatalf("Scheme %q, Inmem %v, String %q", b.Scheme(), b.Inmem(), b.String())
	}
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	publish(t, b, "t", keys...)
	sub, err := b.NewSubscriber()
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int32]bool{}
	for _, m := range receive(t, sub, "t", len(keys)) {
		if m.Delivery.Group != "billing" {
			t.Errorf("group %q, want billing (the URL's group)", m.Delivery.Group)
		}
		parts[m.Delivery.Partition] = true
	}
	if len(parts) != 3 {
		t.Errorf("messages on partitions %v, want exactly 3 partitions", parts)
	}
	// A second group joining later still sees the history: retention.
	late, err := b.NewSubscriber(connect.WithGroup("late"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range receive(t, late, "t", len(keys)) {
		if m.Delivery.Group != "late" {
			t.Fatalf("group %q, want late (WithGroup over the URL's group)", m.Delivery.Group)
		}
	}
}

// TestInmemConcurrency: concurrency=4 in the URL lets four handlers run
// at once; WithConcurrency(1) at NewSubscriber overrides it.
func TestInmemConcurrency(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []connect.SubscriberOption
		want int32
	}{{"from the URL", nil, 4}, {"overridden", []connect.SubscriberOption{connect.WithConcurrency(1)}, 1}} {
		t.Run(c.name, func(t *testing.T) {
			b := open(t, "inmem://?concurrency=4")
			keys := make([]string, 8)
			for i := range keys {
				keys[i] = fmt.Sprint("k", i)
			}
			publish(t, b, "t", keys...)
			sub, err := b.NewSubscriber(c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var running, peak, done atomic.Int32
			release := make(chan struct{})
			var once sync.Once
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = sub.Subscribe(ctx, "t", func(ctx context.Context, m *message.Message) error {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				if n == c.want {
					once.Do(func() { close(release) })
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
				running.Add(-1)
				if done.Add(1) == int32(len(keys)) {
					cancel()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if peak.Load() != c.want || done.Load() != int32(len(keys)) {
				t.Errorf("peak concurrency %d, handled %d; want %d and %d", peak.Load(), done.Load(), c.want, len(keys))
			}
		})
	}
}

// TestInmemShared: the publisher and subscribers of one Open share the
// broker; two Opens do not, unless given one with WithInmemBroker.
func TestInmemShared(t *testing.T) {
	mem, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	a := open(t, "inmem://", connect.WithInmemBroker(mem))
	b := open(t, "inmem://", connect.WithInmemBroker(mem))
	publish(t, a, "shared", "x")
	sub, err := b.NewSubscriber()
	if err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sub, "shared", 1); string(got[0].Payload) != "p-x" {
		t.Errorf("payload %q", got[0].Payload)
	}
	if b.Inmem() != mem {
		t.Error("Inmem() is not the broker given")
	}
	// Separate Opens: separate brokers.
	c, d := open(t, "inmem://"), open(t, "inmem://")
	if c.Inmem() == d.Inmem() {
		t.Error("two Opens of inmem:// share a broker")
	}
	if _, err := connect.Open(context.Background(), "inmem://?partitions=2", connect.WithInmemBroker(mem)); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("WithInmemBroker with partitions: %v, want ErrInvalidConfig", err)
	}
}

func TestCloseClosesSubscribers(t *testing.T) {
	b, err := connect.Open(context.Background(), "inmem://")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.NewSubscriber()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := sub.Subscribe(context.Background(), "t", func(context.Context, *message.Message) error { return nil }); !errors.Is(err, message.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if _, err := b.NewSubscriber(); !errors.Is(err, message.ErrClosed) {
		t.Errorf("NewSubscriber after Close: %v, want ErrClosed", err)
	}
}

// TestBadURLs: every malformed URL fails with ErrInvalidConfig, says what
// is wrong, and never shows the password.
func TestBadURLs(t *testing.T) {
	var nilCtx context.Context
	if _, err := connect.Open(nilCtx, "inmem://"); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("nil ctx: %v", err)
	}
	for _, c := range []struct{ url, want string }{
		{"", "the broker URL is empty"},
		{"127.0.0.1:9092", "does not start with a scheme; want kafka://"},
		{"nats://user:s3cret@127.0.0.1:4222", `unknown broker URL scheme "nats" in nats://user:xxxxx@127.0.0.1:4222; want kafka://`},
		{"KAFKA://", "kafka://: an empty host in the host list"},
		{"kafka://a:9092,,b:9092", "an empty host in the host list"},
		{"kafka://a:99999", `seed broker #0 "a:99999" of 1: port "99999" is not a number from 1 to 65535`},
		{"kafka://a:9092/topic", "a kafka:// URL has no path"},
		{"kafka://u:s3cret@a:9092", "kafka://u:xxxxx@a:9092: credentials in a kafka:// URL need sasl="},
		{"kafka://a:9092?sasl=plain", "sasl=plain needs user:password@"},
		{"amqp://u:s3c/ret@h:5672/", "a '/' or '?' in its user info"},
		{"amqp://u:s3cret@h:5672/#frag", "has a fragment"},
		{"amqp://u:s3%zzcret@h:5672/", "bad percent-escape in its user info"},
		{"amqp://u:s3cret @h:5672/", "contains a space"},
		{"amqp://u:s3cret\n@h:5672/", "contains a control character"},
		{"amqp://u:s3cret@h:5672/?prefetch=0", `amqp://u:xxxxx@h:5672/?prefetch=0: parameter prefetch="0" is not an integer from 1 to 65535`},
		{"amqp://u:s3cret@h:5672/?heartbeat=x", "amqp: "},
		{"amqp://u:s3cret@h:notaport/", "amqp: "},
		{"inmem://name", "an inmem:// URL has no user, host or path"},
		{"inmem://?partitions=70000", `parameter partitions="70000" is not an integer from 1 to 65536`},
	} {
		b, err := connect.Open(context.Background(), c.url)
		if err == nil {
			b.Close()
			t.Errorf("%q: no error", c.url)
			continue
		}
		if !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("%q: %v does not match ErrInvalidConfig", c.url, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %q does not contain %q", c.url, err, c.want)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3c/ret") {
			t.Errorf("%q: the password is in %q", c.url, err)
		}
		if strings.Contains(err.Error(), "nats") != strings.Contains(c.url, "nats") || !errors.Is(err, connect.ErrUnknownScheme) == (strings.HasPrefix(c.url, "nats") || c.url == "127.0.0.1:9092") {
			t.Errorf("%q: ErrUnknownScheme match is %v", c.url, errors.Is(err, connect.ErrUnknownScheme))
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:s3cret@h:5672/vh?prefetch=64": "amqp://guest:xxxxx@h:5672/vh?prefetch=64",
		"amqp://gu%40est:s3%2Fcret@h/":              "amqp://gu%40est:xxxxx@h/",
		"kafka://u:s3cret@a:1,b:2?sasl=plain":       "kafka://u:xxxxx@a:1,b:2?sasl=plain",
		"kafka://a:1,b:2":                           "kafka://a:1,b:2",
		"amqp://u:s3c/ret@h/":                       "amqp://(unparsable)",
		"u:s3cret@h":                                "(unparsable URL)",
		"amqp://u:s3cret@h/?q=s3cret":               "amqp://u:xxxxx@h/?q=xxxxx",
	} {
		if got := connect.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := connect.Open(ctx, "kafka://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "cannot reach Kafka at kafka://127.0.0.1:1") {
		t.Errorf("kafka: %v", err)
	}
	_, err = connect.Open(ctx, "amqp://guest:s3cret@127.0.0.1:1/?dial_timeout=2s")
	if err == nil || !strings.Contains(err.Error(), "cannot reach RabbitMQ: amqp: dial amqp://guest:xxxxx@127.0.0.1:1/") || strings.Contains(err.Error(), secret) {
		t.Errorf("amqp: %v", err)
	}
}

func TestKafkaParametersTakeEffect(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	topic := fmt.Sprintf("connect-test-%d", time.Now().UnixNano())
	b := open(t, "kafka://"+strings.Join(brokers, ",")+"?partitions=3&group=g1&start=earliest&client_id=ferry-connect-test")
	if b.KafkaClient() == nil || len(b.KafkaClientOptions()) < 2 {
		t.Fatalf("KafkaClient %v, KafkaClientOptions %d", b.KafkaClient(), len(b.KafkaClientOptions()))
	}
	adm := kadm.NewClient(b.KafkaClient())
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topic) })
	publish(t, b, topic, "a", "b", "c")
	td, err := adm.ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td[topic].Partitions); n != 3 {
		t.Errorf("topic created with %d partitions, want 3 (partitions=3)", n)
	}
	sub, err := b.NewSubscriber()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range receive(t, sub, topic, 3) {
		if m.Delivery.Group != "g1" {
			t.Errorf("group %q, want g1", m.Delivery.Group)
		}
	}
	noCreate := open(t, "kafka://"+strings.Join(brokers, ",")+"?create_topics=false")
	err = noCreate.Publisher().Publish(context.Background(), topic+"-missing", &message.Message{Payload: []byte("x")})
	if !errors.Is(err, message.ErrTopicNotFound) {
		t.Errorf("create_topics=false, Publish to a missing topic: %v, want ErrTopicNotFound", err)
	}
}

func TestAMQPParametersTakeEffect(t *testing.T) {
	u := testenv.NeedAMQP(t)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	topic := fmt.Sprintf("connect-test-%d", time.Now().UnixNano())
	// declare_groups keeps what is published before the subscriber starts;
	// heartbeat is amqp091's own, passed on.
	b := open(t, u+sep+"declare_groups=g1&group=g1&prefetch=8&heartbeat=5&shards=2")
	if b.AMQPURL() == "" || strings.Contains(b.AMQPURL(), "prefetch") || !strings.Contains(b.AMQPURL(), "heartbeat=5") {
		t.Errorf("AMQPURL %q: want the URL with heartbeat and without ferry's parameters", connect.Redact(b.AMQPURL()))
	}
	publish(t, b, topic, "a", "b")
	sub, err := b.NewSubscriber()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range receive(t, sub, topic, 2) {
		if m.Delivery.Group != "g1" {
			t.Errorf("group %q, want g1", m.Delivery.Group)
		}
	}
	if err := b.Declare(context.Background(), topic+"-2", "g2"); err != nil {
		t.Errorf("Declare: %v", err)
	}
}

// TestNilOptions: nil options (and nil adapter options inside the
// With* wrappers) are skipped, bad option values are errors, nothing
// panics.
func TestNilOptions(t *testing.T) {
	var nilShared connect.SharedOption
	b := open(t, "inmem://", nil, connect.WithKafka(nil), connect.WithAMQP(nil), connect.WithInmem(nil), nilShared)
	sub, err := b.NewSubscriber(nil, connect.WithInmemSubscriber(nil), connect.WithKafkaSubscriber(nil))
	if err != nil || sub == nil {
		t.Fatalf("NewSubscriber with nil options: %v", err)
	}
	for _, o := range []connect.SubscriberOption{connect.WithGroup(""), connect.WithConcurrency(0)} {
		if _, err := b.NewSubscriber(o); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewSubscriber(bad option): %v, want ErrInvalidConfig", err)
		}
	}
	if _, err := connect.Open(context.Background(), "inmem://", connect.WithInmemBroker(nil)); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("WithInmemBroker(nil): %v, want ErrInvalidConfig", err)
	}
	// An adapter option with a bad value fails Open with the adapter's error.
	if _, err := connect.Open(context.Background(), "inmem://", connect.WithInmem(inmem.WithPartitions(0))); !errors.Is(err, message.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithPartitions(0)") {
		t.Errorf("WithInmem(WithPartitions(0)): %v", err)
	}
}
