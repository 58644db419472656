package adapter_test

import (
	"context"
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

func TestPrepareRejectsWithoutChanging(t *testing.T) {
	a := &message.Message{}
	err := adapter.Prepare("t", []*message.Message{a, nil})
	if !errors.Is(err, message.ErrInvalidMessage) {
		t.Fatalf("got %v, want ErrInvalidMessage", err)
	}
	if a.ID != "" || !a.Time.IsZero() {
		t.Fatal("a rejected batch changed its valid message")
	}
	if err := adapter.Prepare("", []*message.Message{a}); !errors.Is(err, message.ErrInvalidTopic) {
		t.Fatalf("empty topic: got %v", err)
	}
	if err := adapter.Prepare("t", []*message.Message{a}); err != nil || a.ID == "" || a.Time.IsZero() {
		t.Fatalf("Prepare did not fill ID/Time: %v %+v", err, a)
	}
	id, tm := a.ID, a.Time
	if err := adapter.Prepare("t", []*message.Message{a}); err != nil || a.ID != id || !a.Time.Equal(tm) {
		t.Fatal("Prepare replaced an existing ID or time")
	}
}

func TestPrepareIDsAreOrderedUUIDv7s(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	var all []string
	for round := range 50 {
		msgs := make([]*message.Message, 1+round*37)
		for i := range msgs {
			msgs[i] = &message.Message{}
		}
		msgs[0].ID = "given" // kept as it is
		before := time.Now().UnixMilli()
		if err := adapter.Prepare("t", msgs); err != nil {
			t.Fatal(err)
		}
		if msgs[0].ID != "given" {
			t.Fatalf("Prepare replaced a given ID with %q", msgs[0].ID)
		}
		for _, m := range msgs[1:] {
			if !re.MatchString(m.ID) {
				t.Fatalf("not a UUIDv7: %q", m.ID)
			}
			ms, err := strconv.ParseInt(strings.ReplaceAll(m.ID[:13], "-", ""), 16, 64)
			if err != nil || ms < before || ms > time.Now().UnixMilli()+1000 {
				t.Fatalf("ID %s carries millisecond %d, made at %d", m.ID, ms, before)
			}
			if m.Time.IsZero() {
				t.Fatal("Prepare left a time zero")
			}
			all = append(all, m.ID)
		}
		all = append(all, message.NewID()) // single IDs interleave in order
	}
	if !sort.StringsAreSorted(all) {
		t.Fatal("IDs made in batches and singly are not in order")
	}
	seen := map[string]bool{}
	for _, id := range all {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestPrepareAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	one := []*message.Message{{}}
	if n := testing.AllocsPerRun(100, func() {
		one[0].ID = ""
		_ = adapter.Prepare("t", one)
	}); n > 1 {
		t.Errorf("one message: %v allocations, want 1 (its ID)", n)
	}
	batch := make([]*message.Message, 100)
	for i := range batch {
		batch[i] = &message.Message{}
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, m := range batch {
			m.ID = ""
		}
		_ = adapter.Prepare("t", batch)
	}); n > 1 {
		t.Errorf("100 messages: %v allocations, want 1 (one string of IDs)", n)
	}
}

func TestCallRecoversPanic(t *testing.T) {
	inner := errors.New("inner")
	err := adapter.Call(context.Background(), func(context.Context, *message.Message) error { panic(inner) }, &message.Message{})
	var pe *message.PanicError
	if !errors.As(err, &pe) || !errors.Is(err, inner) || len(pe.Stack) == 0 {
		t.Fatalf("got %v", err)
	}
	boom := errors.New("boom")
	if err := adapter.Call(context.Background(), func(context.Context, *message.Message) error { return boom }, &message.Message{}); err != boom {
		t.Fatalf("a returned error came back as %v", err)
	}
}

func TestValidateLogTopic(t *testing.T) {
	for _, ok := range []string{"a", "orders", "orders.v1", "my_topic-2", strings.Repeat("x", 249), "..."} {
		if err := adapter.ValidateLogTopic(ok); err != nil {
			t.Errorf("ValidateLogTopic(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", strings.Repeat("x", 250), "has space", "a/b", "ünï", "x:y", "\x00"} {
		if err := adapter.ValidateLogTopic(bad); !errors.Is(err, message.ErrInvalidTopic) {
			t.Errorf("ValidateLogTopic(%q) = %v, want ErrInvalidTopic", bad, err)
		}
	}
}
