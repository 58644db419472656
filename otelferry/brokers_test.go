package otelferry_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
)

const testWait = 30 * time.Second

// broker builds publishers and subscribers of one adapter, each with an
// observer.
type broker struct {
	name, system string
	pub          func(t *testing.T, o message.Observer) message.Publisher
	sub          func(t *testing.T, group string, o message.Observer) message.Subscriber
}

func inmemBroker(t *testing.T) broker {
	b, err := inmem.NewBroker(inmem.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return broker{
		name: "inmem", system: "inmem",
		pub: func(t *testing.T, o message.Observer) message.Publisher {
			p, err := inmem.NewPublisher(b, inmem.WithObserver(o))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		},
		sub: func(t *testing.T, group string, o message.Observer) message.Subscriber {
			s, err := inmem.NewSubscriber(b, inmem.WithGroup(group), inmem.WithObserver(o),
				inmem.WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func kafkaBroker(t *testing.T) broker {
	brokers := testenv.NeedKafka(t)
	return broker{
		name: "kafka", system: "kafka",
		pub: func(t *testing.T, o message.Observer) message.Publisher {
			p, err := kafka.NewPublisher(brokers, kafka.WithObserver(o), kafka.WithTopicCreation(1, -1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		},
		sub: func(t *testing.T, group string, o message.Observer) message.Subscriber {
			s, err := kafka.NewSubscriber(brokers, kafka.WithGroup(group), kafka.WithObserver(o), kafka.WithTopicCreation(1, -1),
				kafka.WithRedeliveryBackoff(time.Millisecond, time.Millisecond), kafka.WithCommitInterval(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func amqpBroker(t *testing.T) broker {
	url := testenv.NeedAMQP(t)
	return broker{
		name: "amqp", system: "rabbitmq",
		pub: func(t *testing.T, o message.Observer) message.Publisher {
			p, err := amqp.NewPublisher(url, amqp.WithObserver(o))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		},
		sub: func(t *testing.T, group string, o message.Observer) message.Subscriber {
			s, err := amqp.NewSubscriber(url, amqp.WithGroup(group), amqp.WithObserver(o), amqp.WithShards(1), amqp.WithPrefetch(1),
				amqp.WithLagInterval(20*time.Millisecond), amqp.WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func forEachBroker(t *testing.T, fn func(t *testing.T, b broker)) {
	t.Run("inmem", func(t *testing.T) { fn(t, inmemBroker(t)) })
	t.Run("kafka", func(t *testing.T) { fn(t, kafkaBroker(t)) })
	t.Run("amqp", func(t *testing.T) { fn(t, amqpBroker(t)) })
}

// sdk is a Telemetry on the real SDK: an in-memory span exporter and a
// manual metric reader.
type sdk struct {
	tel    *otelferry.Telemetry
	tp     *sdktrace.TracerProvider
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
}

func newSDK(t *testing.T, opts ...otelferry.Option) *sdk {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel, err := otelferry.New(append([]otelferry.Option{otelferry.WithTracerProvider(tp), otelferry.WithMeterProvider(mp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &sdk{tel: tel, tp: tp, spans: exp, reader: reader}
}

// span returns the ended span named name whose attribute key is value.
func (s *sdk) span(name string, key attribute.Key, value string) (tracetest.SpanStub, bool) {
	for _, sp := range s.spans.GetSpans() {
		if sp.Name == name && attr(sp.Attributes, key) == value {
			return sp, true
		}
	}
	return tracetest.SpanStub{}, false
}

func (s *sdk) waitSpan(t *testing.T, name string, key attribute.Key, value string) tracetest.SpanStub {
	t.Helper()
	var sp tracetest.SpanStub
	testenv.WaitFor(t, testWait, "span "+name+" with "+string(key)+"="+value, func() bool {
		var ok bool
		sp, ok = s.span(name, key, value)
		return ok
	})
	return sp
}

func attr(kvs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// metrics collects the reader's metrics.
func (s *sdk) metrics(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// sum adds the points of metric name whose messaging.destination.name is
// topic: counters' values, histograms' counts, gauges' values.
func (s *sdk) sum(t *testing.T, name, topic string) int64 {
	t.Helper()
	var n int64
	match := func(set attribute.Set) bool {
		v, ok := set.Value("messaging.destination.name")
		return ok && v.AsString() == topic
	}
	for _, sm := range s.metrics(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						n += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						n += int64(p.Count)
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						n += p.Value
					}
				}
			}
		}
	}
	return n
}

func uniqueTopic(t *testing.T, prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "otel-" + prefix + "-" + hex.EncodeToString(b[:])
}

// subscribe runs s.Subscribe(topic, h) until the test ends and returns
// once it consumes.
func subscribe(t *testing.T, s message.Subscriber, topic string, h message.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(message.WithReady(ctx, func() { once.Do(func() { close(ready) }) }), topic, h)
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Subscribe %q returned before it was ready: %v", topic, err)
	case <-time.After(testWait):
		cancel()
		t.Fatalf("Subscribe %q not ready within %v", topic, testWait)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe %q: %v", topic, err)
			}
		case <-time.After(testWait):
			t.Errorf("Subscribe %q did not return", topic)
		}
	}
	t.Cleanup(stop)
	return stop
}

// A hand-written W3C trace context, as a Java service with the
// OpenTelemetry agent writes it.
const (
	foreignTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	foreignSpanID  = "00f067aa0ba902b7"
	foreignParent  = "00-" + foreignTraceID + "-" + foreignSpanID + "-01"
)
