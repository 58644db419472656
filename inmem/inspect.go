package inmem

import (
	"errors"
	"fmt"
	"sort"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// ErrUnknownGroup is returned (wrapped) by Lag for a group that never
// subscribed to the topic.
var ErrUnknownGroup = errors.New("inmem: unknown group")

// Messages returns a snapshot of the messages the broker holds on topic,
// in publish order (across partitions too): for a test, what was
// published. Each is a copy (Clone) the caller may keep and modify, with
// Delivery.Topic, Partition and Offset set to where it is stored
// (Attempt 0: it was not delivered).
//
// The broker holds every message of a topic that no group has subscribed
// to yet (a topic only tests read, such as a dead-letter topic, keeps
// everything), and otherwise every message some group has not settled
// plus what WithRetention keeps; messages every group settled may be
// dropped at any time. An unknown topic has no messages; an invalid name
// gives message.ErrInvalidTopic. Messages works after Close, so a test
// can inspect a closed broker. Safe for concurrent use with publishers and
// subscribers.
func (b *Broker) Messages(topic string) ([]*message.Message, error) {
	if err := adapter.ValidateLogTopic(topic); err != nil {
		return nil, fmt.Errorf("inmem: messages: %w", err)
	}
	t := b.lookup(topic)
	if t == nil {
		return nil, nil
	}
	type stored struct {
		msg  entry // a copy: trimming may clear the entry once the lock is released
		part int
		off  int64
	}
	t.mu.Lock()
	var all []stored
	for i, p := range t.parts {
		for off := p.base; off < p.end(); off++ {
			all = append(all, stored{msg: *p.at(off), part: i, off: off})
		}
	}
	t.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].msg.seq < all[j].msg.seq })
	out := make([]*message.Message, len(all))
	for i, s := range all {
		c := s.msg.message().Clone()
		c.Delivery = message.Delivery{Topic: topic, Partition: int32(s.part), Offset: s.off}
		out[i] = c
	}
	return out, nil
}

// PartitionLag is how far a group is behind on one partition.
type PartitionLag struct {
	// Partition is the partition's number.
	Partition int
	// Committed is the group's commit point: every message below it is
	// settled, the one at it is not (or does not exist yet).
	Committed int64
	// End is the offset the next message published to the partition gets.
	End int64
	// Lag is End - Committed: the messages not yet settled in order. It
	// counts messages settled beyond an unsettled one, as Kafka's lag does.
	Lag int64
}

// GroupLag is how far a group is behind on a topic (Broker.Lag).
type GroupLag struct {
	// Topic and Group name what was measured.
	Topic, Group string
	// Partitions has one entry per partition of the topic, in order.
	Partitions []PartitionLag
	// Total is the sum of the partitions' Lag.
	Total int64
}

// Lag reports how far group is behind on topic: per partition, the
// group's commit point, the end of the partition and their difference. A
// group that has settled everything published has Total 0. A group that
// never subscribed to the topic (or a topic never used) gives an error
// wrapping ErrUnknownGroup; an invalid topic name message.ErrInvalidTopic.
// Lag works after Close. Safe for concurrent use.
func (b *Broker) Lag(topic, group string) (GroupLag, error) {
	if err := adapter.ValidateLogTopic(topic); err != nil {
		return GroupLag{}, fmt.Errorf("inmem: lag: %w", err)
	}
	t := b.lookup(topic)
	if t == nil {
		return GroupLag{}, fmt.Errorf("%w: group %q has never subscribed to topic %q (the topic does not exist)", ErrUnknownGroup, group, topic)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[group]
	if g == nil {
		return GroupLag{}, fmt.Errorf("%w: group %q has never subscribed to topic %q", ErrUnknownGroup, group, topic)
	}
	return t.lagLocked(g), nil
}

// lagLocked measures g's lag; t.mu is held.
func (t *topic) lagLocked(g *group) GroupLag {
	l := GroupLag{Topic: t.name, Group: g.name, Partitions: make([]PartitionLag, len(t.parts))}
	for i, p := range t.parts {
		gp := g.parts[i]
		gp.mu.Lock()
		c := gp.tr.Next()
		gp.mu.Unlock()
		end := p.end()
		l.Partitions[i] = PartitionLag{Partition: i, Committed: c, End: end, Lag: max(end-c, 0)}
		l.Total += l.Partitions[i].Lag
	}
	return l
}

// lookup returns the named topic, or nil if it was never used. Unlike
// topic it creates nothing and works after Close.
func (b *Broker) lookup(name string) *topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topics[name]
}
