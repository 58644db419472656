package message

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewIDIsUUIDv7AndOrdered(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = NewID()
		if !re.MatchString(ids[i]) {
			t.Fatalf("not a UUIDv7: %q", ids[i])
		}
	}
	requireSortedUnique(t, "IDs made in sequence", ids)
}

// requireSortedUnique fails t unless ids are sorted and distinct.
func requireSortedUnique(t *testing.T, what string, ids []string) {
	t.Helper()
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("%s are not sorted", what)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s: duplicate id %s", what, id)
		}
		seen[id] = true
	}
}

func TestNewIDConcurrentUnique(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			local := make([]string, 2000)
			for i := range local {
				local[i] = NewID()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
}

func TestCloneIsDeep(t *testing.T) {
	m := &Message{ID: "1", Payload: []byte("x"), Headers: map[string]string{"a": "b"}, Delivery: Delivery{Topic: "t", Attempt: 3}}
	c := m.Clone()
	c.Payload[0] = 'y'
	c.Headers["a"] = "c"
	if string(m.Payload) != "x" || m.Headers["a"] != "b" {
		t.Fatal("Clone shares payload or headers")
	}
	if c.Delivery != (Delivery{}) {
		t.Fatal("Clone kept delivery metadata")
	}
}

func TestPublishErrorUnwrapsEachFailure(t *testing.T) {
	boom := errors.New("boom")
	err := &PublishError{Topic: "t", Total: 5, Failed: []FailedMessage{
		{Index: 0, Message: &Message{ID: "a"}, Err: ErrMessageTooLarge},
		{Index: 3, Message: &Message{ID: "d"}, Err: boom},
	}}
	if !errors.Is(err, boom) || !errors.Is(err, ErrMessageTooLarge) || errors.Is(err, ErrClosed) {
		t.Fatal("errors.Is does not see the per-message errors")
	}
	if got := len(err.Messages()); got != 2 {
		t.Fatalf("Messages() = %d", got)
	}
}

func TestNewIDsAreOrderedUUIDv7s(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	var all []string
	for round := range 50 {
		before := time.Now().UnixMilli()
		var ids []string
		for id := range NewIDs(round * 37) {
			ids = append(ids, id)
		}
		if len(ids) != round*37 {
			t.Fatalf("NewIDs(%d) yielded %d IDs", round*37, len(ids))
		}
		for _, id := range ids {
			if !re.MatchString(id) {
				t.Fatalf("not a UUIDv7: %q", id)
			}
			// The first 48 bits are the Unix millisecond (a counter
			// overflow may borrow a few from the future).
			ms, err := strconv.ParseInt(strings.ReplaceAll(id[:13], "-", ""), 16, 64)
			if err != nil || ms < before || ms > time.Now().UnixMilli()+1000 {
				t.Fatalf("ID %s carries millisecond %d, made at %d", id, ms, before)
			}
			all = append(all, id)
		}
		all = append(all, NewID()) // single IDs interleave in order
	}
	requireSortedUnique(t, "IDs made in sequence, in batches and singly,", all)
}

func TestFormatIDMatchesTheUUIDLayout(t *testing.T) {
	for _, c := range []struct{ v, r uint64 }{{0, 0}, {1<<60 - 1, 1<<64 - 1}, {0x0123456789abc<<12 | 0xdef, 0x0011223344556677}} {
		var s [idLen]byte
		formatID(&s, c.v, c.r)
		ms, ctr := c.v>>12, c.v&0xfff
		var u [16]byte
		for i := range 6 {
			u[i] = byte(ms >> (40 - 8*i))
		}
		u[6], u[7] = 0x70|byte(ctr>>8), byte(ctr)
		for i := 8; i < 16; i++ {
			u[i] = byte(c.r >> (8 * (15 - i)))
		}
		u[8] = 0x80 | u[8]&0x3f
		want := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		if string(s[:]) != want {
			t.Fatalf("formatID(%#x, %#x) = %s, want %s", c.v, c.r, s[:], want)
		}
	}
}
