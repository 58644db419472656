package messagetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

func (s *suite) testTwoGroups(t *testing.T) {
	e := s.env(t)
	topic, g1, g2 := e.Topic(), e.Group("g1"), e.Group("g2")
	e.Prepare(topic, g1, g2)
	pub := e.Publisher()

	msgs := newMessages(100, "m", distinctKeys("k"))
	e.Publish(pub, topic, msgs...)

	c1, c2 := NewCollector(), NewCollector()
	run1 := e.subscribe(e.Subscriber(e.Config(g1, 4)), topic, c1.handler(0))
	run2 := e.subscribe(e.Subscriber(e.Config(g2, 4)), topic, c2.handler(0))
	c1.WaitAll(e, "group 1", ids(msgs))
	c2.WaitAll(e, "group 2", ids(msgs))
	e.stop(run1)
	e.stop(run2)
	c1.checkOnly(e, "group 1", ids(msgs))
	c2.checkOnly(e, "group 2", ids(msgs))
}

// testGroupSplit starts two subscribers in one group and publishes rounds of
// messages until both have handled some: the warm-up, during which the group
// may rebalance. Every warm-up message must arrive; one handled by both
// members during the warm-up is tolerated (at-least-once across a rebalance)
// and logged. Then, in steady state, a further batch must be split: each
// message handled exactly once, by one member, and both members get some.
func (s *suite) testGroupSplit(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("shared")
	e.Prepare(topic, group)
	pub := e.Publisher()

	// Each member records a message into the warm-up or the steady-state
	// collector depending on which batch it belongs to. steadyIDs is
	// written before ready is closed and only read after.
	warm, steady := NewCollector(), NewCollector()
	steadyIDs := make(map[string]bool)
	ready := make(chan struct{})
	pick := func(id string) *Collector {
		select {
		case <-ready:
			if steadyIDs[id] {
				return steady
			}
		default:
		}
		return warm
	}
	runs := make([]*subscription, 2)
	for i := range runs {
		runs[i] = e.subscribe(e.Subscriber(e.Config(group, 4)), topic, func(_ context.Context, m *message.Message) error {
			pick(m.ID).record(i, m)
			return nil
		})
	}

	deadline := time.Now().Add(e.timeout)
	var warmIDs []string
	for round := 0; ; round++ {
		msgs := newMessages(16, fmt.Sprintf("warm%d", round), distinctKeys(fmt.Sprintf("w%d", round)))
		e.Publish(pub, topic, msgs...)
		warmIDs = append(warmIDs, ids(msgs)...)
		warm.WaitAll(e, fmt.Sprintf("warm-up round %d", round), ids(msgs))
		if warm.count(0) > 0 && warm.count(1) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d warm-up rounds (%d messages) within %v, subscriber 1 handled %d and subscriber 2 handled %d; want both of the group to get some",
				round+1, len(warmIDs), e.timeout, warm.count(0), warm.count(1))
		}
	}
	var warmDups int
	for _, id := range warmIDs {
		if n := len(warm.get(id)); n > 1 {
			warmDups++
		}
	}
	if warmDups > 0 {
		t.Logf("%d of %d warm-up messages were handled more than once while the group formed (tolerated)", warmDups, len(warmIDs))
	}

	msgs := newMessages(200, "steady", distinctKeys("s"))
	for _, id := range ids(msgs) {
		steadyIDs[id] = true
	}
	close(ready) // publishes steadyIDs to the handlers
	e.Publish(pub, topic, msgs...)
	steady.WaitAll(e, "steady state", ids(msgs))
	for _, r := range runs {
		e.stop(r)
	}

	var both []string
	for _, id := range ids(msgs) {
		rs := steady.get(id)
		if len(rs) > 1 {
			subs := make([]int, len(rs))
			for i, r := range rs {
				subs[i] = r.sub + 1
			}
			both = append(both, fmt.Sprintf("%s (subscribers %v)", id, subs))
		}
	}
	if len(both) > 0 {
		t.Errorf("in steady state, %d of %d messages were handled more than once within one group, want each by one member once: %s",
			len(both), len(msgs), abbrev(both))
	}
	if steady.count(0) == 0 || steady.count(1) == 0 {
		t.Errorf("in steady state subscriber 1 handled %d and subscriber 2 handled %d of %d messages; want both members of the group to get some",
			steady.count(0), steady.count(1), len(msgs))
	}
}
