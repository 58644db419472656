package messagetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// testKeyOrder publishes 200 messages for each of 16 keys, interleaved, and
// consumes them with concurrency 8 and random handler delays. Each key's
// messages must be handled in publish order, exactly once, never two of a
// key at once; the number of handlers running at once must exceed 1 and
// never exceed 8.
func (s *suite) testKeyOrder(t *testing.T) {
	const keys, perKey, concurrency = 16, 200, 8
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	type pos struct {
		key string
		seq int
	}
	where := make(map[string]pos, keys*perKey)
	msgs := make([]*message.Message, 0, keys*perKey)
	for i := range perKey {
		for k := range keys {
			m := &message.Message{
				ID:      message.NewID(),
				Key:     fmt.Sprintf("key-%02d", k),
				Payload: fmt.Appendf(nil, "%d", i),
			}
			where[m.ID] = pos{m.Key, i}
			msgs = append(msgs, m)
		}
	}
	for i := 0; i < len(msgs); i += 400 {
		e.Publish(pub, topic, msgs[i:min(i+400, len(msgs))]...)
	}

	var (
		inFlight, maxInFlight atomic.Int64
		mu                    sync.Mutex
		busy                  = make(map[string]bool)
		order                 = make(map[string][]int)
		overlaps              []string
		unknown               []string
		handled               int
	)
	h := func(_ context.Context, m *message.Message) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			cur := maxInFlight.Load()
			if n <= cur || maxInFlight.CompareAndSwap(cur, n) {
				break
			}
		}
		p, ok := where[m.ID]
		mu.Lock()
		if !ok {
			unknown = append(unknown, m.ID)
			mu.Unlock()
			return nil
		}
		if busy[p.key] {
			overlaps = append(overlaps, fmt.Sprintf("%s #%d", p.key, p.seq))
		}
		busy[p.key] = true
		order[p.key] = append(order[p.key], p.seq)
		mu.Unlock()

		// Simulated work: mostly short, sometimes a millisecond, so that
		// handlers overlap.
		if r := rand.IntN(8); r == 0 {
			time.Sleep(time.Millisecond)
		} else {
			time.Sleep(time.Duration(r*20) * time.Microsecond)
		}

		mu.Lock()
		busy[p.key] = false
		handled++
		mu.Unlock()
		return nil
	}
	run := e.subscribe(e.Subscriber(e.Config(group, concurrency)), topic, h)
	e.Eventually(fmt.Sprintf("%d messages (%d keys × %d)", len(msgs), keys, perKey), func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return handled >= len(msgs), fmt.Sprintf("%d handled", handled)
	})
	e.stop(run)

	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("%d messages were handled while another message with the same key was still running, want never: %s", len(overlaps), abbrev(overlaps))
	}
	if len(unknown) > 0 {
		t.Errorf("%d messages were handled that were not published to this topic: %s", len(unknown), abbrev(unknown))
	}
	for k := range keys {
		key := fmt.Sprintf("key-%02d", k)
		got := order[key]
		ok := len(got) == perKey
		for i := 0; ok && i < perKey; i++ {
			ok = got[i] == i
		}
		if !ok {
			t.Errorf("key %s: handled sequence numbers %s, want 0, 1, ..., %d each once in order", key, describeSeq(got), perKey-1)
		}
	}
	if m := maxInFlight.Load(); m < 2 || m > concurrency {
		t.Errorf("at most %d handlers ran at once, want more than 1 and at most the concurrency limit %d", m, concurrency)
	}
}

// describeSeq shows where a sequence first departs from 0, 1, 2, ...
func describeSeq(seq []int) string {
	for i, v := range seq {
		if v != i {
			lo := max(0, i-2)
			hi := min(len(seq), i+3)
			return fmt.Sprintf("(%d in total) departing at index %d: ...%v...", len(seq), i, seq[lo:hi])
		}
	}
	return fmt.Sprintf("0..%d (%d in total)", len(seq)-1, len(seq))
}
