package messagetest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// testKeptMessagesStayIntact checks what message.Message promises: a
// handler may keep a delivered Message, its Payload and its Headers after it
// returns, because no adapter reuses them for another delivery. The handler
// keeps the delivered pointers (no copy); after every message of two
// batches was handled, each kept message must still hold what was
// published.
func (s *suite) testKeptMessagesStayIntact(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	var mu sync.Mutex
	kept := map[string]*message.Message{}
	c := NewCollector()
	e.Subscribe(e.Subscriber(e.Config(group, 4)), topic, func(_ context.Context, m *message.Message) error {
		mu.Lock()
		if _, ok := kept[m.ID]; !ok {
			kept[m.ID] = m
		}
		mu.Unlock()
		c.Record(m)
		return nil
	})
	want := map[string]*message.Message{}
	for round := range 2 {
		msgs := newMessages(300, fmt.Sprintf("keep%d", round), func(i int) string { return "k" + strconv.Itoa(i%7) })
		for i, m := range msgs {
			m.Headers = map[string]string{"n": strconv.Itoa(i), "round": strconv.Itoa(round)}
			want[m.ID] = m.Clone()
		}
		e.Publish(pub, topic, msgs...)
		c.WaitAll(e, fmt.Sprintf("round %d", round), ids(msgs))
	}
	mu.Lock()
	defer mu.Unlock()
	bad := 0
	for id, w := range want {
		got := kept[id]
		if got == nil {
			t.Fatalf("message %s was handled but not kept", id)
		}
		ok := got.ID == w.ID && got.Key == w.Key && bytes.Equal(got.Payload, w.Payload) &&
			got.Headers["n"] == w.Headers["n"] && got.Headers["round"] == w.Headers["round"]
		if !ok {
			if bad < 5 {
				t.Errorf("kept message %s changed after its handler returned: got key %q payload %q headers %v, want key %q payload %q headers %v",
					id, got.Key, got.Payload, got.Headers, w.Key, w.Payload, w.Headers)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d kept messages changed after their handler returned", bad, len(want))
	}
}
