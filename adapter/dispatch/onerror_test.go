package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// The error observer runs outside the dispatcher's lock: an observer that
// blocks until another key's message has been handled holds up only its
// own worker, not Submit and not the other workers.
func TestBlockingErrorObserverDoesNotStallOtherKeys(t *testing.T) {
	errFirst := errors.New("first attempt fails")
	observing := make(chan struct{})
	bHandled := make(chan struct{})
	giveUp := make(chan struct{}) // closed on failure, so the test ends without a hang
	var giveUpOnce sync.Once
	stop := func() { giveUpOnce.Do(func() { close(giveUp) }) }
	defer stop()

	type seen struct {
		key     string
		attempt int
		err     error
	}
	var mu sync.Mutex
	var observed []seen
	settled := make(chan string, 4)

	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		switch {
		case m.Key == "a" && m.Delivery.Attempt == 1:
			return errFirst
		case m.Key == "b":
			close(bHandled)
		}
		return nil
	}, Config{
		Concurrency: 2,
		Backoff:     fast,
		OnError: func(dl *Delivery, err error) {
			mu.Lock()
			observed = append(observed, seen{dl.Msg.Key, dl.Msg.Delivery.Attempt, err})
			mu.Unlock()
			close(observing)
			select {
			case <-bHandled:
			case <-giveUp:
			}
		},
	}, func(dl *Delivery) { settled <- dl.Msg.Key })
	defer d.Shutdown()

	within := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			stop()
			t.Fatalf("timed out after 5s waiting for %s", what)
		}
	}
	if err := d.Submit(context.Background(), &Delivery{Msg: msg("a", 0)}); err != nil {
		t.Fatal(err)
	}
	within("the observer of a's failure", observing)

	// The observer now blocks until b has been handled. Submit in the
	// background: with the observer under the lock it would block too.
	submitted := make(chan error, 1)
	go func() { submitted <- d.Submit(context.Background(), &Delivery{Msg: msg("b", 0)}) }()
	within("b handled while a's observer blocks", bHandled)
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}

	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case k := <-settled:
			got[k] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for a and b to settle, settled %v", got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 1 || observed[0] != (seen{"a", 1, errFirst}) {
		t.Fatalf("observed %+v, want a's first attempt and its error once", observed)
	}
}

// The observer sees every failed attempt once, with the attempt number
// that failed, while other workers go on (run with -race: it reads the
// delivery without the lock).
func TestErrorObserverSeesEachFailedAttempt(t *testing.T) {
	const keys, perKey = 8, 50
	var mu sync.Mutex
	observed := map[string][]int{}
	var settled sync.WaitGroup
	settled.Add(keys * perKey)
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		if m.Delivery.Attempt <= 2 {
			return errors.New("fails twice")
		}
		return nil
	}, Config{
		Concurrency: 4,
		Backoff:     Backoff{Initial: time.Microsecond, Max: time.Microsecond, Multiplier: 1},
		OnError: func(dl *Delivery, err error) {
			id := dl.Msg.Key + "/" + string(dl.Msg.Payload)
			mu.Lock()
			observed[id] = append(observed[id], dl.Msg.Delivery.Attempt)
			mu.Unlock()
		},
	}, func(*Delivery) { settled.Done() })
	defer d.Shutdown()
	for i := range perKey {
		for k := range keys {
			if err := d.Submit(context.Background(), &Delivery{Msg: msg(string(rune('a'+k)), i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	done := make(chan struct{})
	go func() { settled.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for every delivery to settle")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != keys*perKey {
		t.Fatalf("observed failures of %d deliveries, want %d", len(observed), keys*perKey)
	}
	for id, attempts := range observed {
		if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
			t.Fatalf("%s: observed attempts %v, want [1 2]", id, attempts)
		}
	}
}
