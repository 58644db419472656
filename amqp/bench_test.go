package amqp_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// Benchmarks compare the adapter with raw amqp091-go on the same broker in
// the same benchmark, interleaved chunk by chunk (raw chunk, ferry chunk,
// raw chunk, ...) so that noise from a shared machine hits both alike. Each
// reports raw-msgs/s, ferry-msgs/s and ratio (ferry/raw); b.N is the number
// of messages per side.
//
//	FERRY_REQUIRE_BROKERS=1 go test ./amqp -run '^$' -bench BenchmarkAMQP -benchtime 20000x -count 3
//
// Publish: persistent, mandatory messages with publisher confirms, the
// window being a chunk of 500 (raw: PublishWithDeferredConfirm ×500 then
// wait for all; ferry: one Publish call of 500). Consume: two queues
// pre-filled with b.N messages each, drained with prefetch 128 and one ack
// per message (raw: one goroutine acking each delivery; ferry: Subscribe at
// concurrency 1 with the default prefetch 128).

const benchChunk = 500

var benchSizes = []struct {
	name string
	n    int
}{{"100B", 100}, {"1KiB", 1024}}

func BenchmarkAMQP(b *testing.B) {
	url := testenv.NeedAMQP(b)
	for _, sz := range benchSizes {
		payload := make([]byte, sz.n)
		b.Run("publish/"+sz.name, func(b *testing.B) { benchPublish(b, url, payload) })
		b.Run("consume/"+sz.name, func(b *testing.B) { benchConsume(b, url, payload) })
	}
}

func report(b *testing.B, raw, ferry time.Duration) {
	b.ReportMetric(0, "ns/op")
	rr := float64(b.N) / raw.Seconds()
	fr := float64(b.N) / ferry.Seconds()
	b.ReportMetric(rr, "raw-msgs/s")
	b.ReportMetric(fr, "ferry-msgs/s")
	b.ReportMetric(fr/rr, "ratio")
}

// BenchmarkAMQPConcurrentSinglePublish: many goroutines publishing one
// message per call (confirms windowed across callers).
func BenchmarkAMQPConcurrentSinglePublish(b *testing.B) {
	url := testenv.NeedAMQP(b)
	topic := benchTopic(b, url)
	p := newPub(b, url)
	payload := make([]byte, 100)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Publish(context.Background(), topic, &message.Message{Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// benchTopic declares a fresh topic with one queue ("<topic>.bench") and
// deletes both after the benchmark.
func benchTopic(b *testing.B, url string) string {
	b.Helper()
	topic := topicName(b)
	p := newPub(b, url)
	if err := p.Declare(context.Background(), topic, "bench"); err != nil {
		b.Fatal(err)
	}
	p.Close()
	deleteTopology(b, url, topic, topic+".bench")
	return topic
}

func rawChannel(b *testing.B, url string) *amqp091.Channel {
	b.Helper()
	c, err := amqp091.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		b.Fatal(err)
	}
	return ch
}

func benchPublish(b *testing.B, url string, payload []byte) {
	rawTopic, ferryTopic := benchTopic(b, url), benchTopic(b, url)
	ch := rawChannel(b, url)
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp091.Return, 16))
	go func() {
		for range returns {
		}
	}()
	p := newPub(b, url)
	ctx := context.Background()
	dcs := make([]*amqp091.DeferredConfirmation, 0, benchChunk)
	batch := make([]*message.Message, benchChunk)
	var rawT, ferryT time.Duration
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(benchChunk, b.N-sent)
		t0 := time.Now()
		dcs = dcs[:0]
		for range n {
			// What ferry sends: message_id, timestamp, a ferry-time header.
			now := time.Now()
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, rawTopic, "", true, false, amqp091.Publishing{
				Headers:      amqp091.Table{"ferry-time": now.UnixMilli()},
				DeliveryMode: amqp091.Persistent,
				MessageId:    message.NewID(),
				Timestamp:    now,
				Body:         payload,
			})
			if err != nil {
				b.Fatal(err)
			}
			dcs = append(dcs, dc)
		}
		for _, dc := range dcs {
			if !dc.Wait() {
				b.Fatal("nack")
			}
		}
		t1 := time.Now()
		for i := range n {
			batch[i] = &message.Message{Payload: payload}
		}
		if err := p.Publish(ctx, ferryTopic, batch[:n]...); err != nil {
			b.Fatal(err)
		}
		ferryT += time.Since(t1)
		rawT += t1.Sub(t0)
		sent += n
	}
	b.StopTimer()
	report(b, rawT, ferryT)
}

// fill publishes n ferry messages to a fresh topic and returns it.
func fill(b *testing.B, url string, payload []byte, n int) string {
	b.Helper()
	topic := benchTopic(b, url)
	p := newPub(b, url)
	batch := make([]*message.Message, 0, benchChunk)
	for sent := 0; sent < n; {
		batch = batch[:0]
		for i := 0; i < benchChunk && sent+i < n; i++ {
			batch = append(batch, &message.Message{Payload: payload, Key: fmt.Sprint(i % 16)})
		}
		if err := p.Publish(context.Background(), topic, batch...); err != nil {
			b.Fatal(err)
		}
		sent += len(batch)
	}
	p.Close()
	return topic
}

func benchConsume(b *testing.B, url string, payload []byte) {
	b.StopTimer()
	rawTopic, ferryTopic := fill(b, url, payload, b.N), fill(b, url, payload, b.N)

	ch := rawChannel(b, url)
	if err := ch.Qos(amqp.DefaultMinPrefetch, 0, false); err != nil {
		b.Fatal(err)
	}
	ds, err := ch.Consume(rawTopic+".bench", "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}

	// The ferry handler signals the end of each chunk and waits for the
	// next one to be opened (concurrency 1: calls are sequential).
	s := newSub(b, url, amqp.WithGroup("bench"))
	var n atomic.Int64
	chunkDone, gate := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	ret := make(chan error, 1)
	go func() {
		ret <- s.Subscribe(ctx, ferryTopic, func(context.Context, *message.Message) error {
			if k := n.Add(1); k%benchChunk == 0 || k == int64(b.N) {
				chunkDone <- struct{}{}
				if k < int64(b.N) {
					<-gate
				}
			}
			return nil
		})
	}()

	var rawT, ferryT time.Duration
	first := true
	for got := 0; got < b.N; {
		m := min(benchChunk, b.N-got)
		t0 := time.Now()
		for range m {
			d := <-ds
			if err := d.Ack(false); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		if !first {
			gate <- struct{}{}
		}
		first = false
		<-chunkDone
		ferryT += time.Since(t1)
		rawT += t1.Sub(t0)
		got += m
	}
	cancel()
	if err := <-ret; err != nil {
		b.Fatal(err)
	}
	report(b, rawT, ferryT)
}
