package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Payload layout: bytes 0..7 the sequence number, 8..15 the scheduled send
// time (Unix ns, latency cells only), byte 16 a kind flag (1 = warm-up, not
// counted), the rest a filler derived from the sequence number. Every
// payload is at least minSize bytes.
const (
	minSize  = 24
	kindData = 0
	kindWarm = 1
)

var seed = maphash.MakeSeed()

// fill writes the payload of message seq into b.
func fill(b []byte, seq uint64, sched int64, kind byte) {
	binary.BigEndian.PutUint64(b[0:8], seq)
	binary.BigEndian.PutUint64(b[8:16], uint64(sched))
	b[16] = kind
	x := byte(seq*131 + 7)
	for i := 17; i < len(b); i++ {
		b[i] = x + byte(i)
	}
}

// payloads are the payloads of messages 0..n-1 of one size, generated
// once and shared (read-only) by every cell of that size.
type payloads struct {
	size int
	data [][]byte
	sum  uint64 // sum of checksum(p) over all payloads
}

var (
	payloadMu    sync.Mutex
	payloadCache = map[int]*payloadSet{} // by size
)

// payloadSet holds the payloads of messages 0..len-1 of one size and the
// prefix sums of their checksums, so a cell of n messages uses a prefix.
type payloadSet struct {
	data   [][]byte
	prefix []uint64 // prefix[i] = sum of checksum(data[j]) for j < i
}

func getPayloads(n, size int) *payloads {
	payloadMu.Lock()
	defer payloadMu.Unlock()
	set := payloadCache[size]
	if set == nil || len(set.data) < n {
		set = &payloadSet{data: make([][]byte, n), prefix: make([]uint64, n+1)}
		backing := make([]byte, n*size)
		for i := range n {
			b := backing[i*size : (i+1)*size : (i+1)*size]
			fill(b, uint64(i), 0, kindData)
			set.data[i] = b
			set.prefix[i+1] = set.prefix[i] + checksum(b)
		}
		payloadCache[size] = set
	}
	return &payloads{size: size, data: set.data[:n:n], sum: set.prefix[n]}
}

func checksum(b []byte) uint64 { return maphash.Bytes(seed, b) }

// expectedSum is the checksum total of messages 0..n-1 of the given size
// with sched 0 (backlog and publish cells).
func expectedSum(n, size int) uint64 { return getPayloads(n, size).sum }

// checker counts and checksums what a cell received. It is safe for
// concurrent use. Any message out of range, of the wrong size or seen twice
// is an error; the cell fails when the count or the checksum total is not
// the expected one.
type checker struct {
	n, size int
	seen    []atomic.Uint64
	count   atomic.Int64
	sum     atomic.Uint64
	bad     atomic.Int64
	badMsg  atomic.Pointer[string]
	done    chan struct{}
	once    sync.Once
	firstNS atomic.Int64 // when the first message arrived
	lastNS  atomic.Int64 // when the last one did

	// Latency cells: ignore the sched field in the checksum and record
	// now - sched.
	latency bool
	histMu  sync.Mutex
	hist    *hdrhistogram.Histogram
	warm    chan struct{}
	warmOne sync.Once
}

func newChecker(n, size int) *checker {
	return &checker{n: n, size: size, seen: make([]atomic.Uint64, (n+63)/64), done: make(chan struct{}), warm: make(chan struct{})}
}

func newLatencyChecker(n, size int) *checker {
	c := newChecker(n, size)
	c.latency = true
	c.hist = hdrhistogram.New(1, 120_000_000, 3) // µs
	return c
}

func (c *checker) fail(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.badMsg.CompareAndSwap(nil, &s)
	c.bad.Add(1)
}

// got checks one received payload.
func (c *checker) got(p []byte) {
	if len(p) != c.size || len(p) < minSize {
		c.fail("payload of %d bytes, want %d", len(p), c.size)
		return
	}
	if p[16] == kindWarm {
		c.warmOne.Do(func() { close(c.warm) })
		return
	}
	seq := binary.BigEndian.Uint64(p[0:8])
	if seq >= uint64(c.n) {
		c.fail("unexpected message seq %d (want < %d)", seq, c.n)
		return
	}
	if c.latency {
		sched := int64(binary.BigEndian.Uint64(p[8:16]))
		us := (time.Now().UnixNano() - sched) / 1000
		c.histMu.Lock()
		_ = c.hist.RecordValue(max(us, 1))
		c.histMu.Unlock()
		// checksum of the payload as if sched were 0
		c.sum.Add(checksumWithZeroSched(p))
	} else {
		c.sum.Add(checksum(p))
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if old := c.seen[w].Or(bit); old&bit != 0 {
		c.fail("duplicate message seq %d", seq)
		return
	}
	switch c.count.Add(1) {
	case 1:
		c.firstNS.Store(time.Now().UnixNano())
	case int64(c.n):
		c.lastNS.Store(time.Now().UnixNano())
		c.once.Do(func() { close(c.done) })
	}
}

var zeroBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func checksumWithZeroSched(p []byte) uint64 {
	bp := zeroBufPool.Get().(*[]byte)
	b := append((*bp)[:0], p...)
	binary.BigEndian.PutUint64(b[8:16], 0)
	s := checksum(b)
	*bp = b
	zeroBufPool.Put(bp)
	return s
}

// wait blocks until every message arrived, ctx ends or the checker saw a
// bad message.
func (c *checker) wait(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return c.verify()
		case <-ctx.Done():
			return fmt.Errorf("received %d of %d messages before %v: %w", c.count.Load(), c.n, context.Cause(ctx), c.verify())
		case <-t.C:
			if c.bad.Load() > 0 {
				return c.verify()
			}
		}
	}
}

// span is the time from the first to the last message received (0 if
// unknown).
func (c *checker) span() time.Duration {
	f, l := c.firstNS.Load(), c.lastNS.Load()
	if f == 0 || l <= f {
		return 0
	}
	return time.Duration(l - f)
}

// verify checks count, duplicates and checksum.
func (c *checker) verify() error {
	if b := c.bad.Load(); b > 0 {
		return fmt.Errorf("%d bad messages, first: %s", b, *c.badMsg.Load())
	}
	if got := c.count.Load(); got != int64(c.n) {
		return fmt.Errorf("received %d messages, want %d", got, c.n)
	}
	missing := 0
	for i := range c.seen {
		want := ^uint64(0)
		if i == len(c.seen)-1 && c.n%64 != 0 {
			want = 1<<(c.n%64) - 1
		}
		missing += bits.OnesCount64(want &^ c.seen[i].Load())
	}
	if missing > 0 {
		return fmt.Errorf("%d messages missing", missing)
	}
	if got, want := c.sum.Load(), expectedSum(c.n, c.size); got != want {
		return fmt.Errorf("checksum mismatch: got %x, want %x", got, want)
	}
	return nil
}

// schedule runs a fixed-rate send schedule for the latency workload:
// message i is due at start + i/rate. It hands (seq, due time) to
// `workers` goroutines that call send; a message that is sent late keeps its
// scheduled time, so queueing delay counts as latency (no coordinated
// omission). It returns the first send error.
func schedule(ctx context.Context, n, size int, rate float64, workers int, send func(ctx context.Context, payload []byte) error) error {
	type job struct {
		seq   int
		sched int64
	}
	jobs := make(chan job, n)
	var (
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				b := make([]byte, size)
				fill(b, uint64(j.seq), j.sched, kindData)
				if err := send(ctx, b); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	start := time.Now()
	interval := float64(time.Second) / rate
	for i := 0; i < n; {
		now := time.Since(start)
		for i < n && time.Duration(float64(i)*interval) <= now {
			jobs <- job{seq: i, sched: start.Add(time.Duration(float64(i) * interval)).UnixNano()}
			i++
		}
		if i < n {
			next := time.Duration(float64(i) * interval)
			if d := next - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return *e
	}
	return ctx.Err()
}

// warmPayload is a warm-up message: received but not counted.
func warmPayload(size int) []byte {
	b := make([]byte, size)
	fill(b, 0, 0, kindWarm)
	return b
}

// waitWarm waits until the consumer received a warm-up message, sending one
// every second (a consumer group may take seconds to join).
func (c *checker) waitWarm(ctx context.Context, send func(ctx context.Context, payload []byte) error) error {
	ctx, cancel := context.WithTimeoutCause(ctx, time.Minute, errors.New("no warm-up message received within a minute"))
	defer cancel()
	for {
		if err := send(ctx, warmPayload(c.size)); err != nil {
			return fmt.Errorf("warm-up publish: %w", err)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-c.warm:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("consumer not ready: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

// parallel runs f(i) for i in [0,n) on g goroutines, stopping at the first
// error.
func parallel(ctx context.Context, n, g int, f func(ctx context.Context, i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	for range g {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return *e
	}
	return nil
}

// batches runs f on consecutive [lo,hi) ranges of at most size b.
func batches(n, b int, f func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += b {
		if err := f(lo, min(lo+b, n)); err != nil {
			return err
		}
	}
	return nil
}
