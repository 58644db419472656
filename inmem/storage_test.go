package inmem

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// TestPartitionChunks appends and drops entries across chunk boundaries
// and checks every kept offset still reads its own entry.
func TestPartitionChunks(t *testing.T) {
	var p partition
	next := int64(0) // offset of the next push
	check := func() {
		t.Helper()
		if got, want := p.end(), next; got != want {
			t.Fatalf("end %d, want %d", got, want)
		}
		for off := p.base; off < p.end(); off++ {
			if e := p.at(off); e.seq != uint64(off) || e.id != fmt.Sprint(off) {
				t.Fatalf("offset %d holds seq %d id %q", off, e.seq, e.id)
			}
		}
		if max := (p.n+p.head)/chunkLen + 1; len(p.chunks) > max {
			t.Fatalf("%d chunks kept for %d entries from head %d", len(p.chunks), p.n, p.head)
		}
	}
	push := func(k int) {
		for range k {
			p.push(entry{id: fmt.Sprint(next), seq: uint64(next)})
			next++
		}
	}
	for _, step := range []struct{ push, drop int }{
		{1, 0}, {chunkLen - 1, 0}, {1, 1}, {10, chunkLen}, {3 * chunkLen, 5},
		{0, 2*chunkLen + 6}, {0, p.n}, {7, 0}, {chunkLen, chunkLen + 7}, {1, 0},
	} {
		push(step.push)
		k := min(step.drop, p.n)
		p.drop(k)
		check()
		if p.base+int64(p.n) != next {
			t.Fatalf("base %d + n %d != %d", p.base, p.n, next)
		}
	}
	// The dropped entries are cleared: a chunk is reused only cleared.
	if p.spare == nil {
		t.Fatal("no spare chunk after dropping whole chunks")
	}
	for i := range p.spare {
		if e := &p.spare[i]; e.id != "" || e.seq != 0 {
			t.Fatalf("the spare chunk holds entry %d: seq %d", i, e.seq)
		}
	}
}

// TestHandlerChangingItsMessageChangesNothingElse: every delivery is a
// Message of its own, built from the broker's stored copy, so a handler
// that reassigns its message's fields does not change what another group
// gets, what a redelivery of the message gets, or Broker.Messages.
func TestHandlerChangingItsMessageChangesNothingElse(t *testing.T) {
	b := newBroker(t, WithPartitions(2))
	defer b.Close()
	pub := newPublisher(t, b)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	orig := make([]*message.Message, 20)
	for i := range orig {
		orig[i] = &message.Message{ID: fmt.Sprint("id-", i), Key: fmt.Sprint("k", i%3), Payload: []byte(fmt.Sprint("p", i)),
			Headers: map[string]string{"h": fmt.Sprint(i)}, Time: at.Add(time.Duration(i) * time.Second)}
	}
	// Subscribe first (Ready), publish after: every group gets all 20.
	same := func(m *message.Message) error {
		i := -1
		for j, o := range orig {
			if o.ID == m.ID {
				i = j
			}
		}
		if i < 0 {
			return fmt.Errorf("unknown message id %q (key %q)", m.ID, m.Key)
		}
		o := orig[i]
		if m.Key != o.Key || string(m.Payload) != string(o.Payload) || m.Headers["h"] != o.Headers["h"] || len(m.Headers) != 1 || !m.Time.Equal(o.Time) {
			return fmt.Errorf("message %d changed: %+v", i, m)
		}
		if m.Delivery.Topic != "t" || m.Delivery.Attempt < 1 || m.Delivery.Offset < 0 {
			return fmt.Errorf("message %d: delivery metadata %+v", i, m.Delivery)
		}
		return nil
	}
	scribble := func(m *message.Message) {
		m.ID, m.Key, m.Payload, m.Time = "scribbled", "scribbled", []byte("scribbled"), time.Time{}
		m.Headers = map[string]string{"scribbled": "1"}
		m.Delivery = message.Delivery{Topic: "scribbled", Offset: -1}
	}
	bad := make(chan error, 100)
	report := func(err error) {
		if err != nil {
			bad <- err
		}
	}

	// Group "a" scribbles over every message it gets; its first member
	// then fails all of them (nothing settles) and stops, so a second
	// member gets them again from the broker.
	sa1, _ := NewSubscriber(b, WithGroup("a"), WithConcurrency(4))
	gotA1 := make(chan struct{}, len(orig))
	ctxA1, stopA1 := context.WithCancel(context.Background())
	errA1 := make(chan error, 1)
	release := make(chan struct{})
	readyA1 := make(chan struct{})
	go func() {
		errA1 <- sa1.Subscribe(message.WithReady(ctxA1, func() { close(readyA1) }), "t", func(ctx context.Context, m *message.Message) error {
			if m.ID == "scribbled" {
				// The dispatcher's retry of a failed delivery hands the
				// same *Message to the handler again: its own changes.
				return errors.New("still not")
			}
			report(same(m))
			scribble(m)
			gotA1 <- struct{}{}
			<-release
			return errors.New("not this time") // nothing of group a settles
		})
	}()
	sb, _ := NewSubscriber(b, WithGroup("b"), WithConcurrency(4))
	seenB := &collector{seen: map[string]int{}, at: map[int]chan struct{}{}}
	allB := seenB.reached(len(orig))
	readyB := make(chan struct{})
	ctxB, stopB := context.WithCancel(context.Background())
	errB := make(chan error, 1)
	go func() {
		errB <- sb.Subscribe(message.WithReady(ctxB, func() { close(readyB) }), "t", func(ctx context.Context, m *message.Message) error {
			report(same(m))
			err := seenB.handler(ctx, m)
			scribble(m)
			return err
		})
	}()
	waitClosed(t, readyA1, "group a's first member ready")
	waitClosed(t, readyB, "group b ready")
	if err := pub.Publish(context.Background(), "t", orig...); err != nil {
		t.Fatal(err)
	}
	// One message per key of group a is running (the others of its key
	// wait behind it): 3 keys.
	for range 3 {
		waitClosed(t, chanOf(gotA1), "group a handling")
	}
	waitClosed(t, allB, "group b handling all")
	close(release)
	stopA1()
	if err := <-errA1; err != nil {
		t.Fatal(err)
	}

	// The second member of "a" gets everything again, unchanged.
	sa2, _ := NewSubscriber(b, WithGroup("a"), WithConcurrency(4))
	seenA2 := &collector{seen: map[string]int{}, at: map[int]chan struct{}{}}
	allA2 := seenA2.reached(len(orig))
	redelivered := make(chan bool, 100)
	stopA2 := run(t, sa2, "t", func(ctx context.Context, m *message.Message) error {
		report(same(m))
		redelivered <- m.Delivery.Redelivered
		err := seenA2.handler(ctx, m)
		scribble(m)
		return err
	})
	waitClosed(t, allA2, "group a's second member handling all")
	waitSettled(t, b, "t", "a")
	waitSettled(t, b, "t", "b")
	if err := stopA2(); err != nil {
		t.Fatal(err)
	}
	stopB()
	if err := <-errB; err != nil {
		t.Fatal(err)
	}
	close(bad)
	for err := range bad {
		t.Error(err)
	}
	close(redelivered)
	n := 0
	for r := range redelivered {
		if r {
			n++
		}
	}
	if n < 3 {
		t.Errorf("%d of the second member's deliveries flagged redelivered, want at least the 3 the first member ran", n)
	}
}

// chanOf turns one receive from c into a channel closed after it, for
// waitClosed.
func chanOf(c <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() { <-c; close(done) }()
	return done
}

// TestMessagesAfterHandlersChangedTheirs: Broker.Messages returns the
// stored messages, not what handlers made of their deliveries.
func TestMessagesAfterHandlersChangedTheirs(t *testing.T) {
	b := newBroker(t, WithPartitions(1), WithRetention(100, 0))
	defer b.Close()
	pub := newPublisher(t, b)
	s, _ := NewSubscriber(b)
	ready := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- s.Subscribe(message.WithReady(ctx, func() { close(ready) }), "t", func(_ context.Context, m *message.Message) error {
			m.ID, m.Payload, m.Key = "x", []byte("x"), "x"
			return nil
		})
	}()
	waitClosed(t, ready, "subscriber ready")
	for i := range 5 {
		if err := pub.Publish(context.Background(), "t", &message.Message{ID: fmt.Sprint(i), Key: "k", Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(t, b, "t", DefaultGroup)
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ms, err := b.Messages("t")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 {
		t.Fatalf("%d messages kept, want 5", len(ms))
	}
	for i, m := range ms {
		if m.ID != fmt.Sprint(i) || string(m.Payload) != fmt.Sprint(i) || m.Key != "k" {
			t.Errorf("message %d: %+v", i, m)
		}
	}
}
