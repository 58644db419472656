package chanadapter

import (
	"fmt"
	"sync"

	"github.com/ferrymsg/ferry/adapter/offsets"
	"github.com/ferrymsg/ferry/message"
)

// DefaultPartitions is the partition count of a topic unless NewBroker is
// given another.
const DefaultPartitions = 4

// Broker is the in-process log that publishers append to and subscribers
// consume. Create it with NewBroker.
type Broker struct {
	partitions int

	mu     sync.Mutex // guards everything below, and every topic, group and partition
	topics map[string]*topic
	closed bool
	done   chan struct{} // closed by Close
}

// NewBroker returns an empty broker whose topics have partitions
// partitions (DefaultPartitions when 0).
func NewBroker(partitions int) (*Broker, error) {
	if partitions == 0 {
		partitions = DefaultPartitions
	}
	if partitions < 0 {
		return nil, fmt.Errorf("chanadapter: %w: %d partitions", message.ErrInvalidConfig, partitions)
	}
	return &Broker{partitions: partitions, topics: map[string]*topic{}, done: make(chan struct{})}, nil
}

// Close closes the broker: Publish and Subscribe return message.ErrClosed
// from then on, and running Subscribe calls drain and return it. It is
// safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	return nil
}

type topic struct {
	logs   [][]*message.Message // one append-only log per partition
	groups map[string]*group
	rr     int           // the next partition of a keyless message
	notify chan struct{} // closed at the next append; nil while nobody waits
}

// group is a consumer group on one topic.
type group struct {
	name    string
	members []*member
	parts   []*groupPart
}

// groupPart is a group's state of one partition.
type groupPart struct {
	tr        offsets.Tracker // the commit point
	owner     *member
	epoch     uint64 // one per assignment: settlements of an earlier one are ignored
	fetched   int64  // the next offset to hand to the owner
	delivered int64  // one past the highest offset ever handed out
	revoking  bool   // the owner is to give it up
	draining  bool   // the owner is waiting for its handlers
}

// topicLocked returns the named topic, creating it.
func (b *Broker) topicLocked(name string) *topic {
	t := b.topics[name]
	if t == nil {
		t = &topic{logs: make([][]*message.Message, b.partitions), groups: map[string]*group{}}
		b.topics[name] = t
	}
	return t
}

// groupLocked returns the named group of t, creating it at the start of
// every partition.
func (t *topic) groupLocked(name string) *group {
	g := t.groups[name]
	if g == nil {
		g = &group{name: name, parts: make([]*groupPart, len(t.logs))}
		for i := range g.parts {
			g.parts[i] = &groupPart{}
		}
		t.groups[name] = g
	}
	return g
}

// partitionLocked maps a key to its partition (FNV-1a); keyless messages
// go round robin.
func (t *topic) partitionLocked(key string) int {
	if key == "" {
		t.rr = (t.rr + 1) % len(t.logs)
		return t.rr
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(len(t.logs)))
}

// wakeLocked wakes the members waiting for an append.
func (t *topic) wakeLocked() {
	if t.notify != nil {
		close(t.notify)
		t.notify = nil
	}
}

// appendedLocked returns a channel closed at the next append.
func (t *topic) appendedLocked() <-chan struct{} {
	if t.notify == nil {
		t.notify = make(chan struct{})
	}
	return t.notify
}

// rebalanceLocked gives partition i to member i mod M. A partition that
// another member owns is revoked first: its owner drains it and then
// releases it (releaseLocked). A revocation the next rebalance calls off
// before the drain began leaves the partition where it is.
func (g *group) rebalanceLocked() {
	for i, gp := range g.parts {
		want := g.wantLocked(i)
		switch {
		case gp.owner == want:
			gp.revoking = false
		case gp.owner == nil:
			g.assignLocked(i, want)
		case !gp.revoking:
			gp.revoking = true
			gp.owner.poke()
		}
	}
}

func (g *group) wantLocked(i int) *member {
	if len(g.members) == 0 {
		return nil
	}
	return g.members[i%len(g.members)]
}

// assignLocked makes m (nil: nobody) the owner of partition i from its
// commit point, under a new epoch.
func (g *group) assignLocked(i int, m *member) {
	gp := g.parts[i]
	gp.owner, gp.revoking, gp.draining = m, false, false
	gp.epoch++
	gp.fetched = gp.tr.Next()
	if m != nil {
		m.poke()
	}
}

// releaseLocked hands partition i on to the member that should own it now
// (which may be the one giving it up, if the revocation was called off).
func (g *group) releaseLocked(i int) {
	g.assignLocked(i, g.wantLocked(i))
}
