package dedupe_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/message"
)

// TestTypedNilStore: a nil *MemoryStore in the Store interface used to be
// accepted; every delivery then panicked inside the middleware and the
// handler was re-run forever.
func TestTypedNilStore(t *testing.T) {
	var s *dedupe.MemoryStore
	if _, err := dedupe.New(s); !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("dedupe.New(typed nil store) = %v, want ErrInvalidConfig", err)
	}
	if _, err := dedupe.New(nil); !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("dedupe.New(nil) = %v, want ErrInvalidConfig", err)
	}
}

// TestKeyFromContext: the handler sees the key the middleware claimed.
func TestKeyFromContext(t *testing.T) {
	s, err := dedupe.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mw := newMW(t, s, dedupe.WithKey(func(m *message.Message) string { return "k-" + m.ID }))
	var got string
	var ok bool
	h := mw(func(ctx context.Context, m *message.Message) error {
		got, ok = dedupe.KeyFromContext(ctx)
		return nil
	})
	if err := h(context.Background(), &message.Message{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	if !ok || got != "k-1" {
		t.Fatalf("KeyFromContext = %q, %v; want %q, true", got, ok, "k-1")
	}
	if k, ok := dedupe.KeyFromContext(context.Background()); ok || k != "" {
		t.Fatalf("KeyFromContext(Background) = %q, %v", k, ok)
	}
	var nilCtx context.Context // a nil context on purpose
	if k, ok := dedupe.KeyFromContext(nilCtx); ok || k != "" {
		t.Fatalf("KeyFromContext(nil) = %q, %v", k, ok)
	}
}

// TestNilSweep calls the exported API with nil, typed nil, nil options,
// nil messages and nil handlers and asserts no panic and a clear error.
// A nil context is a programmer error (Go convention) and is not swept,
// except KeyFromContext above.
func TestNilSweep(t *testing.T) {
	ctx := context.Background()
	noPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s panicked: %v", name, r)
			}
		}()
		f()
	}
	for name, o := range map[string]dedupe.Option{
		"WithOnDuplicate(nil)": dedupe.WithOnDuplicate(nil),
		"WithKey(nil)":         dedupe.WithKey(nil),
	} {
		s, _ := dedupe.NewMemoryStore()
		noPanic(name, func() {
			if _, err := dedupe.New(s, o); !errors.Is(err, message.ErrInvalidConfig) {
				t.Errorf("New(%s) = %v, want ErrInvalidConfig", name, err)
			}
		})
		s.Close()
	}
	noPanic("NewMemoryStore(nil option)", func() {
		s, err := dedupe.NewMemoryStore(nil)
		if err != nil {
			t.Errorf("NewMemoryStore(nil) = %v, want it skipped", err)
			return
		}
		s.Close()
	})
	noPanic("WithClock(nil)", func() {
		if s, err := dedupe.NewMemoryStore(dedupe.WithClock(nil)); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewMemoryStore(WithClock(nil)) = %v, want ErrInvalidConfig", err)
			if s != nil {
				s.Close()
			}
		}
	})
	s, err := dedupe.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	noPanic("New(nil option)", func() {
		if _, err := dedupe.New(s, nil); err != nil {
			t.Errorf("New(nil option) = %v", err)
		}
	})
	mw := newMW(t, s)
	noPanic("mw(nil)", func() {
		if h := mw(nil); h != nil {
			t.Error("mw(nil) != nil")
		}
	})
	noPanic("handler(nil message)", func() {
		_ = mw(func(context.Context, *message.Message) error { return nil })(ctx, nil)
	})
	noPanic("KeyByPosition(nil)", func() { _ = dedupe.KeyByPosition(nil) })
	noPanic("KeyByID(nil)", func() { _ = dedupe.KeyByID(nil) })
	noPanic("KeyByHeader(nil)", func() { _ = dedupe.KeyByHeader("h")(nil) })
	noPanic("store empty key", func() {
		if _, err := s.Claim(ctx, "", dedupe.DefaultLease); err == nil {
			t.Error("Claim(empty key) = nil")
		}
	})
}
