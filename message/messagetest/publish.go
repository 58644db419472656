package messagetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// sameMessage reports how got differs from want in ID, Key, Payload, Headers
// and Time (compared in milliseconds, which Kafka and AMQP keep). A nil and
// an empty payload or header map are equal. Received headers whose keys
// start with "ferry-" (reserved by ferry) and were not sent are ignored.
func sameMessage(want, got *message.Message) []string {
	var diffs []string
	if got.ID != want.ID {
		diffs = append(diffs, fmt.Sprintf("ID %q, want %q", got.ID, want.ID))
	}
	if got.Key != want.Key {
		diffs = append(diffs, fmt.Sprintf("Key %q, want %q", got.Key, want.Key))
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		diffs = append(diffs, fmt.Sprintf("Payload of %d bytes %s, want %d bytes %s",
			len(got.Payload), preview(got.Payload), len(want.Payload), preview(want.Payload)))
	}
	for k, v := range want.Headers {
		if gv, ok := got.Headers[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("header %q missing, want %q", k, v))
		} else if gv != v {
			diffs = append(diffs, fmt.Sprintf("header %q = %q, want %q", k, gv, v))
		}
	}
	for k, v := range got.Headers {
		if _, ok := want.Headers[k]; !ok && !strings.HasPrefix(k, "ferry-") {
			diffs = append(diffs, fmt.Sprintf("unexpected header %q = %q", k, v))
		}
	}
	if got.Time.UnixMilli() != want.Time.UnixMilli() {
		diffs = append(diffs, fmt.Sprintf("Time %v, want %v (compared in milliseconds)", got.Time, want.Time))
	}
	return diffs
}

func preview(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%q...", b[:16])
	}
	return fmt.Sprintf("%q", b)
}

func (s *suite) testRoundTrip(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)

	size := s.h.Features.MaxPayload
	if size <= 0 {
		size = 1 << 20
	}
	large := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range large {
		large[i] = byte(rng.Uint32())
	}
	binary := make([]byte, 0, 260)
	for i := range 256 {
		binary = append(binary, byte(i))
	}
	binary = append(binary, 0xff, 0xfe, 0xc3, 0x28) // invalid UTF-8

	sent := []*message.Message{
		{ID: message.NewID(), Key: "empty-payload", Payload: []byte{}},
		{ID: message.NewID(), Key: "binary", Payload: binary},
		{ID: message.NewID(), Key: "large", Payload: large},
		{
			ID:      message.NewID(),
			Key:     "ключ-🔑",
			Payload: []byte("headers"),
			Headers: map[string]string{
				"ключ":       "значение",
				"emoji-🚀":    "✓ ünïcödé 日本語",
				"empty":      "",
				"plain-name": "plain value",
			},
			Time: time.Date(2023, 3, 14, 15, 9, 26, 535897932, time.UTC),
		},
		{ID: message.NewID(), Payload: []byte("no key, no headers"), Time: time.Now().Add(-time.Hour)},
	}
	want := make([]*message.Message, len(sent))
	pub := e.Publisher()
	for i, m := range sent {
		// One message per call, so that a size limit shows up on its own.
		e.Publish(pub, topic, m)
		want[i] = m.Clone() // ID and Time as Publish left them
	}

	c := NewCollector()
	sub := e.Subscriber(e.Config(group, 1))
	run := e.subscribe(sub, topic, c.handler(0))
	c.WaitAll(e, "round trip", ids(sent))
	e.stop(run)

	for _, w := range want {
		rs := c.get(w.ID)
		got := rs[0].msg
		if diffs := sameMessage(w, got); len(diffs) > 0 {
			t.Errorf("message %q (key %q) changed in transit:\n\t%s", w.ID, w.Key, strings.Join(diffs, "\n\t"))
		}
		if got.Delivery.Topic != topic {
			t.Errorf("message %q: Delivery.Topic = %q, want %q", w.ID, got.Delivery.Topic, topic)
		}
		if got.Delivery.Group != group {
			t.Errorf("message %q: Delivery.Group = %q, want %q", w.ID, got.Delivery.Group, group)
		}
		if got.Delivery.Attempt != 1 {
			t.Errorf("message %q: Delivery.Attempt = %d on first delivery, want 1", w.ID, got.Delivery.Attempt)
		}
	}
	c.checkOnly(e, "round trip", ids(sent))
}

func (s *suite) testPublishFillsIDAndTime(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	msgs := []*message.Message{
		{Key: "k", Payload: []byte("first")},
		{Key: "k", Payload: []byte("second")},
	}
	before := time.Now()
	e.Publish(pub, topic, msgs...)
	after := time.Now()
	for i, m := range msgs {
		if m.ID == "" {
			t.Fatalf("message #%d: Publish left ID empty, want it filled in", i)
		}
		if m.Time.IsZero() {
			t.Fatalf("message #%d: Publish left Time zero, want it set to the publish time", i)
		}
		// Generous bounds: this checks that Time is "now", not how fast
		// Publish is; an adapter may round Time to the broker's precision.
		if m.Time.Before(before.Add(-time.Second)) || m.Time.After(after.Add(time.Second)) {
			t.Errorf("message #%d: Publish set Time to %v, want the publish time (between %v and %v)", i, m.Time, before, after)
		}
	}
	if msgs[0].ID == msgs[1].ID {
		t.Errorf("Publish gave two messages the same ID %q", msgs[0].ID)
	}

	c := NewCollector()
	sub := e.Subscriber(e.Config(group, 1))
	run := e.subscribe(sub, topic, c.handler(0))
	c.WaitAll(e, "messages with IDs filled in by Publish", ids(msgs))
	e.stop(run)
	for _, m := range msgs {
		got := c.get(m.ID)[0].msg
		if got.Time.UnixMilli() != m.Time.UnixMilli() {
			t.Errorf("message %q: received Time %v, want the Time Publish filled in, %v (compared in milliseconds)", m.ID, got.Time, m.Time)
		}
	}
	c.checkOnly(e, "messages with IDs filled in by Publish", ids(msgs))
}

func (s *suite) testBatchPublish(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	msgs := newMessages(1000, "batch", distinctKeys("k"))
	e.Publish(pub, topic, msgs...)

	c := NewCollector()
	sub := e.Subscriber(e.Config(group, 8))
	run := e.subscribe(sub, topic, c.handler(0))
	c.WaitAll(e, "batch of 1000", ids(msgs))
	e.stop(run)
	c.checkOnly(e, "batch of 1000", ids(msgs))
}

func (s *suite) testConcurrentPublish(t *testing.T) {
	const goroutines, perGoroutine = 20, 500
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	c := NewCollector()
	sub := e.Subscriber(e.Config(group, 8))
	run := e.subscribe(sub, topic, c.handler(0))

	batches := make([][]*message.Message, goroutines)
	var all []string
	for g := range batches {
		batches[g] = newMessages(perGoroutine, fmt.Sprintf("g%d", g), distinctKeys(fmt.Sprintf("g%d", g)))
		all = append(all, ids(batches[g])...)
	}
	ctx := e.Context()
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g, msgs := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, m := range msgs {
				if err := pub.Publish(ctx, topic, m); err != nil {
					errs <- fmt.Errorf("goroutine %d, message %d: Publish: %w", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	c.WaitAll(e, "concurrent publishes", all)
	e.stop(run)
	c.checkOnly(e, "concurrent publishes", all)
}

func (s *suite) testTopicIsolation(t *testing.T) {
	e := s.env(t)
	topicA, topicB, group := e.Topic(), e.Topic(), e.Group("g")
	if topicA == topicB {
		t.Fatalf("Harness.NewTopic returned %q twice", topicA)
	}
	e.Prepare(topicA, group)
	e.Prepare(topicB, group)
	pub := e.Publisher()

	// Same keys on both topics, interleaved.
	msgsA := newMessages(50, "a", distinctKeys("k"))
	msgsB := newMessages(50, "b", distinctKeys("k"))
	for i := range msgsA {
		e.Publish(pub, topicA, msgsA[i])
		e.Publish(pub, topicB, msgsB[i])
	}

	ca, cb := NewCollector(), NewCollector()
	runA := e.subscribe(e.Subscriber(e.Config(group, 4)), topicA, ca.handler(0))
	runB := e.subscribe(e.Subscriber(e.Config(group, 4)), topicB, cb.handler(0))
	ca.WaitAll(e, "topic A", ids(msgsA))
	cb.WaitAll(e, "topic B", ids(msgsB))
	e.stop(runA)
	e.stop(runB)
	ca.checkOnly(e, "subscriber of topic A", ids(msgsA))
	cb.checkOnly(e, "subscriber of topic B", ids(msgsB))
}
