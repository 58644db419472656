package messagetest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ferrymsg/ferry/message"
)

// received is one handler call as a collector saw it.
type received struct {
	msg *message.Message // a clone, Delivery included
	sub int              // which subscriber handled it
}

// Collector records handler calls by message ID, keeping a clone of each
// delivery (Delivery included). Safe for concurrent use.
type Collector struct {
	mu    sync.Mutex
	byID  map[string][]received
	bySub map[int]int
	calls int
}

// NewCollector returns an empty collector.
func NewCollector() *Collector {
	return &Collector{byID: make(map[string][]received), bySub: make(map[int]int)}
}

// Handler returns a handler that records each message and returns nil.
func (c *Collector) Handler() message.Handler { return c.handler(0) }

// Record records one handler call of m, for handlers that decide
// themselves what to return.
func (c *Collector) Record(m *message.Message) { c.record(0, m) }

// Received returns the recorded deliveries of id, in the order they were
// recorded.
func (c *Collector) Received(id string) []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*message.Message, len(c.byID[id]))
	for i, r := range c.byID[id] {
		out[i] = r.msg
	}
	return out
}

// WaitAll waits (Env.Eventually) until every id was recorded at least once;
// on failure it names what is missing.
func (c *Collector) WaitAll(e *Env, what string, ids []string) {
	e.t.Helper()
	e.Eventually(fmt.Sprintf("%s: all %d messages", what, len(ids)), func() (bool, string) {
		miss := c.missing(ids)
		if len(miss) == 0 {
			return true, ""
		}
		return false, fmt.Sprintf("%d of %d (missing %s)", len(ids)-len(miss), len(ids), abbrev(miss))
	})
}

func (c *Collector) record(sub int, m *message.Message) {
	cp := m.Clone()
	cp.Delivery = m.Delivery
	c.mu.Lock()
	c.byID[m.ID] = append(c.byID[m.ID], received{msg: cp, sub: sub})
	c.bySub[sub]++
	c.calls++
	c.mu.Unlock()
}

// handler returns a handler that records each message as handled by
// subscriber sub and returns nil.
func (c *Collector) handler(sub int) message.Handler {
	return func(_ context.Context, m *message.Message) error {
		c.record(sub, m)
		return nil
	}
}

// get returns the handler calls for id.
func (c *Collector) get(id string) []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.byID[id])
}

// count returns the number of handler calls by subscriber sub.
func (c *Collector) count(sub int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySub[sub]
}

// missing returns the ids that were not handled yet.
func (c *Collector) missing(ids []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range ids {
		if len(c.byID[id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// checkOnly fails the test for every id that was handled more than once, and
// for any handled message that is not in ids.
func (c *Collector) checkOnly(e *Env, what string, ids []string) {
	e.t.Helper()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var dups, extra []string
	for id, rs := range c.byID {
		if !want[id] {
			extra = append(extra, id)
		} else if len(rs) > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, len(rs)))
		}
	}
	if len(dups) > 0 {
		e.t.Errorf("%s: %d messages were handled more than once, want each once: %s", what, len(dups), abbrev(dups))
	}
	if len(extra) > 0 {
		e.t.Errorf("%s: %d messages were handled that were not published there: %s", what, len(extra), abbrev(extra))
	}
}

// abbrev prints up to 5 items of a list.
func abbrev(s []string) string {
	slices.Sort(s)
	if len(s) > 5 {
		return fmt.Sprintf("%s and %d more", strings.Join(s[:5], ", "), len(s)-5)
	}
	return strings.Join(s, ", ")
}

// newMessages returns n messages with IDs set, keys from key(i) and payload
// "<prefix>-<i>".
func newMessages(n int, prefix string, key func(i int) string) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = &message.Message{
			ID:      message.NewID(),
			Payload: []byte(prefix + "-" + strconv.Itoa(i)),
		}
		if key != nil {
			msgs[i].Key = key(i)
		}
	}
	return msgs
}

// distinctKeys gives every message its own key.
func distinctKeys(prefix string) func(int) string {
	return func(i int) string { return prefix + "-" + strconv.Itoa(i) }
}

func ids(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}
