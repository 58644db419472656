package dedupe

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory store defaults.
const (
	// DefaultMaxKeys is the memory store's default bound on keys held
	// (claimed and processed).
	DefaultMaxKeys = 100_000
	// DefaultTTL is how long a processed key is remembered by default,
	// by every store.
	DefaultTTL = 24 * time.Hour
)

// MemoryStore is a Store held in process memory. It is bounded: when
// MaxKeys keys are held, a new claim evicts the oldest processed key (and
// any whose retention TTL passed), never a live claim; when every slot is a
// live claim, Claim returns ErrStoreFull and the message is redelivered
// later. Expired keys are purged lazily during Claim: the store starts no
// goroutine.
//
// A memory store only deduplicates within one process and forgets
// everything on restart, so it catches duplicates from in-process
// redelivery and publisher retries, not from a crash. Use package sqlstore
// to survive restarts or to share one store between instances.
type MemoryStore struct {
	mu      sync.Mutex
	entries map[string]memEntry
	// done lists processed keys in completion order, oldest first, from
	// index head. Records whose key was claimed again since are stale
	// and recognised by their sequence number.
	done   []doneRec
	head   int
	seq    uint64
	token  Token
	closed bool

	maxKeys int
	ttl     int64 // nanoseconds
	clock   func() time.Time
	// base is the store's creation time; without WithClock the store
	// reads the monotonic clock only (time.Since), which costs half of
	// time.Now.
	base     time.Time
	baseUnix int64
}

var _ Store = (*MemoryStore)(nil)

type memEntry struct {
	processed bool
	token     Token
	until     int64 // lease end (claimed) or processed time (processed), unix ns
	seq       uint64
}

type doneRec struct {
	key string
	at  int64
	seq uint64
}

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore) error

// WithMaxKeys bounds the keys the store holds, claimed and processed
// together. Default DefaultMaxKeys (100,000). It must be positive.
func WithMaxKeys(n int) MemoryOption {
	return func(s *MemoryStore) error {
		if n <= 0 {
			return invalidConfig("WithMaxKeys(%d): must be positive", n)
		}
		s.maxKeys = n
		return nil
	}
}

// WithTTL sets how long a processed key is remembered: a duplicate that
// arrives later runs again. Default DefaultTTL (24 h). It must be positive.
func WithTTL(ttl time.Duration) MemoryOption {
	return func(s *MemoryStore) error {
		if ttl <= 0 {
			return invalidConfig("WithTTL(%v): must be positive", ttl)
		}
		s.ttl = int64(ttl)
		return nil
	}
}

// WithClock replaces time.Now as the store's clock, for tests that move
// time forward to expire leases and processed keys. Default time.Now.
func WithClock(now func() time.Time) MemoryOption {
	return func(s *MemoryStore) error {
		if now == nil {
			return invalidConfig("WithClock(nil)")
		}
		s.clock = now
		return nil
	}
}

// NewMemoryStore returns an empty memory store.
func NewMemoryStore(opts ...MemoryOption) (*MemoryStore, error) {
	base := time.Now()
	s := &MemoryStore{maxKeys: DefaultMaxKeys, ttl: int64(DefaultTTL), base: base, baseUnix: base.UnixNano()}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.entries = make(map[string]memEntry, min(s.maxKeys, 1024))
	return s, nil
}

// now returns the store's time in Unix nanoseconds.
func (s *MemoryStore) now() int64 {
	if s.clock != nil {
		return s.clock().UnixNano()
	}
	return s.baseUnix + int64(time.Since(s.base))
}

// Claim implements Store.
func (s *MemoryStore) Claim(ctx context.Context, key string, lease time.Duration) (ClaimResult, error) {
	if err := ctx.Err(); err != nil {
		return ClaimResult{}, err
	}
	if key == "" {
		return ClaimResult{}, fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if lease <= 0 {
		return ClaimResult{}, fmt.Errorf("dedupe: claim %q: lease %v must be positive", key, lease)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ClaimResult{}, ErrClosed
	}
	s.purgeExpired(now)
	e, ok := s.entries[key]
	if ok {
		switch {
		case e.processed && now-e.until < s.ttl:
			return ClaimResult{Status: Processed}, nil
		case !e.processed && now < e.until:
			return ClaimResult{Status: InProgress}, nil
		}
		// Expired lease or processed mark: the key is free; reuse its slot.
	} else if len(s.entries) >= s.maxKeys && !s.evict(now) {
		return ClaimResult{}, fmt.Errorf("%w (%d keys)", ErrStoreFull, s.maxKeys)
	}
	s.token++
	s.seq++
	s.entries[key] = memEntry{token: s.token, until: now + int64(lease), seq: s.seq}
	return ClaimResult{Status: Claimed, Token: s.token}, nil
}

// Extend implements Store.
func (s *MemoryStore) Extend(ctx context.Context, key string, token Token, lease time.Duration) error {
	if lease <= 0 {
		return fmt.Errorf("dedupe: extend %q: lease %v must be positive", key, lease)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	e, ok := s.entries[key]
	if !ok || e.processed || e.token != token {
		return ErrLeaseLost
	}
	e.until = now + int64(lease)
	s.entries[key] = e
	return nil
}

// Complete implements Store.
func (s *MemoryStore) Complete(ctx context.Context, key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	e, ok := s.entries[key]
	if ok && e.processed && now-e.until < s.ttl {
		return nil
	}
	if !ok && len(s.entries) >= s.maxKeys && !s.evict(now) {
		// Every slot is a live claim: not remembering this key can only
		// let a later duplicate run, never lose a message.
		return nil
	}
	s.seq++
	s.entries[key] = memEntry{processed: true, until: now, seq: s.seq}
	s.done = append(s.done, doneRec{key: key, at: now, seq: s.seq})
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context, key string, token Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if e, ok := s.entries[key]; ok && !e.processed && e.token == token {
		delete(s.entries, key)
	}
	return nil
}

// Len returns the number of keys held, claimed and processed, including
// expired ones not purged yet.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Close drops every key. Later calls return ErrClosed. Close is safe to
// repeat and starts or leaves no goroutine.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.entries = nil
	s.done = nil
	s.head = 0
	return nil
}

// purgeExpired deletes processed keys older than the TTL from the front of
// the completion list. Amortised O(1) per call.
func (s *MemoryStore) purgeExpired(now int64) {
	for s.head < len(s.done) && now-s.done[s.head].at >= s.ttl {
		s.popDone()
	}
	s.compact()
}

// evict frees one slot: the oldest processed key, or else an expired
// claim. It reports whether a slot was freed.
func (s *MemoryStore) evict(now int64) bool {
	for s.head < len(s.done) {
		if s.popDone() {
			s.compact()
			return true
		}
	}
	s.compact()
	// No processed key left: look for a claim whose lease ended (its
	// consumer crashed). Rare, so a scan is fine.
	for k, e := range s.entries {
		if !e.processed && now >= e.until {
			delete(s.entries, k)
			return true
		}
	}
	return false
}

// popDone removes the oldest completion record and deletes its key when
// the record is current. It reports whether a key was deleted.
func (s *MemoryStore) popDone() bool {
	r := s.done[s.head]
	s.done[s.head] = doneRec{}
	s.head++
	if e, ok := s.entries[r.key]; ok && e.processed && e.seq == r.seq {
		delete(s.entries, r.key)
		return true
	}
	return false
}

// compact reclaims the consumed front of the completion list.
func (s *MemoryStore) compact() {
	if s.head == len(s.done) {
		s.done = s.done[:0]
		s.head = 0
		return
	}
	if s.head >= 1024 && s.head*2 >= len(s.done) {
		n := copy(s.done, s.done[s.head:])
		clear(s.done[n:])
		s.done = s.done[:n]
		s.head = 0
	}
}
