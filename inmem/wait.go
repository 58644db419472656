package inmem

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// WaitSettled blocks until group has settled every message published to
// topic before the call: its handlers returned nil for each (a message the
// retry middleware dead-lettered counts as settled, and its dead-letter
// copy is published by then). A test then reads "publish; wait; assert",
// with no sleep and no sentinel message:
//
//	_ = pub.Publish(ctx, "orders", msg)
//	if err := b.WaitSettled(ctx, "orders", "billing"); err != nil {
//		t.Fatal(err)
//	}
//
// Messages published after the call starts are not waited for. If
// something was published and the group has not subscribed yet, it waits
// for the group to join (a new group starts from the earliest message, so
// it will receive them). It returns nil at once when nothing was
// published.
//
// When ctx ends first, the error wraps ctx's error and says what is still
// unsettled: per partition the commit point and how many are left, and
// the message at the commit point (ID, key); a group that never joined
// says so. After Close of the broker it returns message.ErrClosed. An
// invalid topic name gives message.ErrInvalidTopic, a nil ctx
// message.ErrInvalidConfig. Safe for concurrent use.
func (b *Broker) WaitSettled(ctx context.Context, topic, group string) error {
	if ctx == nil {
		return fmt.Errorf("inmem: wait settled: %w: nil context", message.ErrInvalidConfig)
	}
	if err := adapter.ValidateLogTopic(topic); err != nil {
		return fmt.Errorf("inmem: wait settled: %w", err)
	}
	if group == "" {
		return fmt.Errorf("inmem: wait settled on %q: %w: empty group name", topic, message.ErrInvalidConfig)
	}
	t := b.lookup(topic)
	if t == nil {
		return nil // nothing was ever published
	}
	t.waiters.Add(1)
	defer t.waiters.Add(-1)

	t.mu.Lock()
	target := make([]int64, len(t.parts))
	published := false
	for i, p := range t.parts {
		target[i] = p.end()
		published = published || target[i] > 0
	}
	t.mu.Unlock()
	if !published {
		return nil
	}
	for {
		// Take the channel before checking, so that a settlement in
		// between is not missed.
		ch := t.settledChan()
		if done, _ := t.settledUpTo(group, target); done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			_, report := t.settledUpTo(group, target)
			return fmt.Errorf("inmem: wait for group %q to settle %q: %w: %s", group, topic, ctx.Err(), report)
		case <-b.done:
			if done, _ := t.settledUpTo(group, target); done {
				return nil
			}
			return fmt.Errorf("inmem: wait for group %q to settle %q: %w", group, topic, message.ErrClosed)
		}
	}
}

// errNotJoined marks a group that does not exist yet in settledUpTo's
// report.
var errNotJoined = errors.New("never joined")

// settledUpTo reports whether group's commit point reached target on every
// partition and, if not, what is missing.
func (t *topic) settledUpTo(group string, target []int64) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[group]
	if g == nil {
		return false, fmt.Sprintf("the group %v (nobody subscribed to the topic in it)", errNotJoined)
	}
	var missing []string
	left := int64(0)
	for i, gp := range g.parts {
		gp.mu.Lock()
		c := gp.tr.Next()
		gp.mu.Unlock()
		if c >= target[i] {
			continue
		}
		left += target[i] - c
		if len(missing) < 4 {
			desc := fmt.Sprintf("partition %d at offset %d, %d left", i, c, target[i]-c)
			p := t.parts[i]
			if c >= p.base && c < p.end() {
				m := p.at(c)
				desc += fmt.Sprintf(" (next: id %s, key %q)", m.id, m.key)
			}
			missing = append(missing, desc)
		}
	}
	if left == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("%d unsettled: %s", left, strings.Join(missing, "; "))
}
