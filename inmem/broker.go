package inmem

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/adapter/offsets"
	"github.com/ferrymsg/ferry/message"
)

// Broker is an in-process message broker: topics are partitioned ordered
// logs with consumer-group offsets. The zero value is not usable; call
// NewBroker.
type Broker struct {
	partitions  int
	retainCount int
	retainAge   time.Duration

	mu     sync.Mutex
	topics map[string]*topic
	closed bool
	done   chan struct{}
}

// NewBroker returns an empty broker configured by opts. A bad option value
// fails with an error wrapping message.ErrInvalidConfig that names the
// option; nil options are skipped.
func NewBroker(opts ...BrokerOption) (*Broker, error) {
	b := &Broker{partitions: DefaultPartitions, topics: make(map[string]*topic), done: make(chan struct{})}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyBroker(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Close closes the broker: Publish and Subscribe on its publishers and
// subscribers return message.ErrClosed, and running Subscribe calls drain
// and return message.ErrClosed. Close is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	return nil
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// topic returns the named topic, creating it.
func (b *Broker) topic(name string) (*topic, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, message.ErrClosed
	}
	t := b.topics[name]
	if t == nil {
		t = &topic{b: b, name: name, groups: make(map[string]*group), parts: make([]*partition, b.partitions)}
		for i := range t.parts {
			t.parts[i] = &partition{}
		}
		b.topics[name] = t
	}
	return t, nil
}

type topic struct {
	b    *Broker
	name string

	mu     sync.Mutex
	parts  []*partition
	groups map[string]*group
	rr     int           // round-robin partition for keyless messages
	notify chan struct{} // closed at the next append; nil when nobody waits
	seq    uint64        // publish sequence of the last appended message

	// Settlement waiters (Broker.WaitSettled): waiters counts them, so
	// that a settlement signals only when someone waits; settledCh is
	// closed (and replaced) when a commit point moves or a group joins.
	waiters   atomic.Int32
	waitMu    sync.Mutex
	settledCh chan struct{}
}

// settledChan returns a channel closed at the next commit point move or
// group join on t.
func (t *topic) settledChan() <-chan struct{} {
	t.waitMu.Lock()
	defer t.waitMu.Unlock()
	if t.settledCh == nil {
		t.settledCh = make(chan struct{})
	}
	return t.settledCh
}

// signalSettled wakes the settlement waiters, if any.
func (t *topic) signalSettled() {
	if t.waiters.Load() == 0 {
		return
	}
	t.waitMu.Lock()
	if t.settledCh != nil {
		close(t.settledCh)
		t.settledCh = nil
	}
	t.waitMu.Unlock()
}

type partition struct {
	// The kept entries, by value, in chunks of chunkLen (so that a fetch
	// reads them in sequence, not through a pointer each, and an append
	// never copies the log): offset base is chunks[0][head], and n
	// entries follow it. An entry is never changed once appended, until
	// trimming clears it, which it does only to entries every group has
	// settled: an entry a member fetched (and not yet settled) stays
	// intact while the member builds its delivery outside the lock.
	base   int64
	head   int
	n      int
	chunks []*chunk
	spare  *chunk // a cleared chunk kept for the next append
}

// chunkLen is the number of entries of a chunk (24 KiB).
const chunkLen = 256

type chunk [chunkLen]entry

// at returns the entry at off, which must be in [base, end()).
func (p *partition) at(off int64) *entry {
	i := p.head + int(off-p.base)
	return &p.chunks[i/chunkLen][i%chunkLen]
}

// push appends e.
func (p *partition) push(e entry) {
	i := p.head + p.n
	if i/chunkLen == len(p.chunks) {
		c := p.spare
		if c == nil {
			c = new(chunk)
		}
		p.spare = nil
		p.chunks = append(p.chunks, c)
	}
	p.chunks[i/chunkLen][i%chunkLen] = e
	p.n++
}

// drop clears and forgets the first k entries (k <= n).
func (p *partition) drop(k int) {
	p.base += int64(k)
	p.n -= k
	for k > 0 {
		c := p.chunks[0]
		m := min(k, chunkLen-p.head)
		clear(c[p.head : p.head+m])
		p.head += m
		k -= m
		if p.head == chunkLen {
			p.chunks[0] = nil
			p.chunks = p.chunks[1:]
			p.head = 0
			p.spare = c
		}
	}
	if p.n == 0 && len(p.chunks) > 0 && p.head > 0 {
		p.head = 0 // empty: start the chunk over (its entries are cleared)
	}
}

// entry is a message as the broker keeps it: what Publish stored, no
// delivery metadata.
type entry struct {
	id      string
	key     string
	payload []byte
	headers map[string]string
	time    time.Time
	seq     uint64 // the topic-wide publish sequence (Broker.Messages)
}

// message returns a new Message with e's fields (sharing Payload and
// Headers) and no delivery metadata.
func (e *entry) message() *message.Message {
	return &message.Message{ID: e.id, Key: e.key, Payload: e.payload, Headers: e.headers, Time: e.time}
}

func (p *partition) end() int64 { return p.base + int64(p.n) }

// partitionFor maps a key to a partition with FNV-1a, so a key keeps its
// partition; keyless messages go round robin.
func (t *topic) partitionFor(key string) int {
	n := len(t.parts)
	if key == "" {
		t.rr++
		return t.rr % n
	}
	return keyPartition(key, n)
}

// keyPartition is the partition of a non-empty key among n: FNV-1a.
func keyPartition(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// wakeLocked wakes every member waiting for new messages.
func (t *topic) wakeLocked() {
	if t.notify != nil {
		close(t.notify)
		t.notify = nil
	}
}

// waitChLocked returns a channel closed at the next append.
func (t *topic) waitChLocked() <-chan struct{} {
	if t.notify == nil {
		t.notify = make(chan struct{})
	}
	return t.notify
}

// trimLocked drops messages of partition i that every group has settled
// and that retention does not keep.
func (t *topic) trimLocked(i int) {
	if len(t.groups) == 0 {
		return // keep everything for the first group
	}
	p := t.parts[i]
	upto := p.end()
	for _, g := range t.groups {
		gp := g.parts[i]
		gp.mu.Lock()
		upto = min(upto, gp.tr.Next())
		gp.mu.Unlock()
	}
	if c := t.b.retainCount; c > 0 {
		upto = min(upto, p.end()-int64(c))
	}
	n := int(upto - p.base)
	if a := t.b.retainAge; a > 0 && n > 0 {
		cutoff := time.Now().Add(-a)
		for n > 0 && !p.at(p.base+int64(n-1)).time.Before(cutoff) {
			n--
		}
	}
	if n <= 0 {
		return
	}
	p.drop(n)
}

// group is a consumer group's state on one topic.
type group struct {
	name    string
	parts   []*groupPart
	members []*member
}

type groupPart struct {
	// mu guards tr, sinceTrim and the settle view of the owner, so that
	// settling (once per message) does not contend for the topic lock.
	// Lock order: topic.mu before groupPart.mu.
	mu        sync.Mutex
	tr        offsets.Tracker // commit point and settled offsets beyond it
	sinceTrim int
	setOwner  *member // owner and epoch as settlements see them
	setEpoch  uint64

	owner     *member
	epoch     uint64 // incremented at each ownership change
	fetched   int64  // next offset to hand to the owner
	delivered int64  // highest offset ever handed out + 1
	revoking  bool   // the owner should be another member: it must give it up
	// draining: the owner dropped the partition's queued deliveries and
	// waits for its running handlers. It fetches nothing of the
	// partition meanwhile and, once they returned, gives the partition up
	// (releaseLocked) even if revoking was cleared in between: its fetch
	// position lies past the dropped offsets.
	draining bool
}

func (t *topic) groupLocked(name string) *group {
	g := t.groups[name]
	if g == nil {
		g = &group{name: name, parts: make([]*groupPart, len(t.parts))}
		for i, p := range t.parts {
			gp := &groupPart{}
			gp.tr.Reset(p.base) // a new group starts from the earliest message
			g.parts[i] = gp
		}
		t.groups[name] = g
	}
	return g
}

// rebalanceLocked assigns partition i to member i mod len(members). A
// partition owned by another member is first revoked: its owner drops the
// partition's queued work, waits for its in-flight handlers, and releases
// it (releaseLocked) to the member it should go to then.
//
// A revocation can be cancelled before it completes: a leave (or another
// join) can make the current owner the wanted one again, and revoking is
// then cleared. If the owner has not started draining yet, it simply keeps
// the partition, nothing was dropped. If it has (draining), it still
// releases the partition when its handlers returned, and releaseLocked
// hands it back to it, from the commit point and under a new epoch.
func (t *topic) rebalanceLocked(g *group) {
	for i, gp := range g.parts {
		var want *member
		if len(g.members) > 0 {
			want = g.members[i%len(g.members)]
		}
		switch {
		case gp.owner == want:
			gp.revoking = false
		case gp.owner == nil:
			t.assignLocked(g, i, want)
		default:
			if !gp.revoking {
				gp.revoking = true
				gp.owner.poke()
			}
		}
	}
}

// assignLocked makes m (nil: nobody) the owner of partition i from the
// commit point on, under a new epoch: settlements of deliveries made under
// an earlier one are ignored, and m fetches from the commit point again.
func (t *topic) assignLocked(g *group, i int, m *member) {
	gp := g.parts[i]
	gp.owner = m
	gp.epoch++
	gp.revoking = false
	gp.draining = false
	gp.mu.Lock()
	gp.setOwner, gp.setEpoch = m, gp.epoch
	gp.fetched = gp.tr.Next()
	gp.mu.Unlock()
	if m != nil {
		m.poke() // it may be waiting for new messages, not for this
	}
}

// releaseLocked gives up partition i of g and hands it to whoever should
// own it now, which may be the member giving it up.
func (t *topic) releaseLocked(g *group, i int) {
	gp := g.parts[i]
	gp.owner = nil
	gp.revoking = false
	var want *member
	if len(g.members) > 0 {
		want = g.members[i%len(g.members)]
	}
	t.assignLocked(g, i, want)
}
