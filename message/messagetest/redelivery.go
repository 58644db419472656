package messagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// call is one handler call as the redelivery tests record it.
type call struct {
	seq     int
	attempt int
	id      string
}

func (c call) String() string { return fmt.Sprintf("#%d/attempt %d", c.seq, c.attempt) }

// keyedLog records handler calls per key, in the order they started.
type keyedLog struct {
	unordered bool // Features.NoKeyOrder: check compares attempts per message only
	mu        sync.Mutex
	calls     map[string][]call
	ok        map[string]bool // IDs whose handler returned nil
}

func newKeyedLog(unordered bool) *keyedLog {
	return &keyedLog{unordered: unordered, calls: make(map[string][]call), ok: make(map[string]bool)}
}

// keyedMessages returns perKey messages for each key, interleaved, with the
// sequence number within the key as payload.
func keyedMessages(keys []string, perKey int) []*message.Message {
	var msgs []*message.Message
	for i := range perKey {
		for _, k := range keys {
			msgs = append(msgs, &message.Message{ID: message.NewID(), Key: k, Payload: []byte(strconv.Itoa(i))})
		}
	}
	return msgs
}

// handler records each call and then returns what fail says for it (nil
// settles; an error or a panic asks for redelivery).
func (l *keyedLog) handler(fail func(key string, seq, attempt int) error) message.Handler {
	return func(_ context.Context, m *message.Message) error {
		seq, err := strconv.Atoi(string(m.Payload))
		if err != nil {
			return fmt.Errorf("messagetest: unexpected payload %q: %w", m.Payload, err)
		}
		l.mu.Lock()
		l.calls[m.Key] = append(l.calls[m.Key], call{seq: seq, attempt: m.Delivery.Attempt, id: m.ID})
		l.mu.Unlock()
		if err := fail(m.Key, seq, m.Delivery.Attempt); err != nil {
			return err
		}
		l.mu.Lock()
		l.ok[m.ID] = true
		l.mu.Unlock()
		return nil
	}
}

// waitSettled waits until every message's handler returned nil.
func (l *keyedLog) waitSettled(e *Env, what string, msgs []*message.Message) {
	e.t.Helper()
	e.Eventually(what, func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		var miss []string
		for _, m := range msgs {
			if !l.ok[m.ID] {
				miss = append(miss, m.Key+"#"+string(m.Payload))
			}
		}
		return len(miss) == 0, fmt.Sprintf("%d of %d settled (missing %s)", len(msgs)-len(miss), len(msgs), abbrev(miss))
	})
}

// check compares the calls of key with want, given as seq/attempt pairs.
func (l *keyedLog) check(t *testing.T, key string, want []call) {
	t.Helper()
	l.mu.Lock()
	got := slices.Clone(l.calls[key])
	l.mu.Unlock()
	if l.unordered {
		// Without per-key order only each message's own attempts are
		// ordered: 1, 2, ... as they started.
		for i := 1; i < len(got); i++ {
			for j := 0; j < i; j++ {
				if got[j].seq == got[i].seq && got[j].attempt >= got[i].attempt {
					t.Errorf("key %q: message #%d had attempt %d after attempt %d, want growing attempts", key, got[i].seq, got[i].attempt, got[j].attempt)
				}
			}
		}
		slices.SortStableFunc(got, func(a, b call) int { return a.seq - b.seq })
	}
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = got[i].seq == want[i].seq && got[i].attempt == want[i].attempt
	}
	if !same {
		t.Errorf("key %q: handler calls (message #seq/Delivery.Attempt) were\n\t%s\nwant\n\t%s", key, joinCalls(got), joinCalls(want))
	}
	// A redelivery is the same message.
	ids := make(map[int]string)
	for _, c := range got {
		if id, ok := ids[c.seq]; ok && id != c.id {
			t.Errorf("key %q: message #%d was delivered with ID %q and then %q, want the same message", key, c.seq, id, c.id)
		}
		ids[c.seq] = c.id
	}
}

func joinCalls(cs []call) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}

// expectCalls builds the expected call list of a key with n messages, where
// message #seq takes attempts[seq] attempts (1 when absent).
func expectCalls(n int, attempts map[int]int) []call {
	var out []call
	for seq := range n {
		a := attempts[seq]
		if a == 0 {
			a = 1
		}
		for i := 1; i <= a; i++ {
			out = append(out, call{seq: seq, attempt: i})
		}
	}
	return out
}

var errTestFailure = errors.New("messagetest: handler failure on purpose")

func (s *suite) testHandlerError(t *testing.T) {
	const perKey = 10
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	msgs := keyedMessages([]string{"a", "b", "c"}, perKey)
	e.Publish(pub, topic, msgs...)

	// a#3 fails twice, b#5 once; c never fails.
	l := newKeyedLog(s.h.Features.NoKeyOrder)
	h := l.handler(func(key string, seq, attempt int) error {
		switch {
		case key == "a" && seq == 3 && attempt < 3, key == "b" && seq == 5 && attempt < 2:
			return fmt.Errorf("%w: %s#%d attempt %d", errTestFailure, key, seq, attempt)
		}
		return nil
	})
	run := e.subscribe(e.Subscriber(e.Config(group, 4)), topic, h)
	l.waitSettled(e, "every message settled despite handler errors", msgs)
	e.stop(run)

	l.check(t, "a", expectCalls(perKey, map[int]int{3: 3}))
	l.check(t, "b", expectCalls(perKey, map[int]int{5: 2}))
	l.check(t, "c", expectCalls(perKey, nil))
}

func (s *suite) testHandlerPanic(t *testing.T) {
	const perKey = 10
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	msgs := keyedMessages([]string{"p", "q"}, perKey)
	e.Publish(pub, topic, msgs...)

	l := newKeyedLog(s.h.Features.NoKeyOrder)
	h := l.handler(func(key string, seq, attempt int) error {
		if key == "p" && seq == 2 && attempt == 1 {
			panic("messagetest: handler panic on purpose")
		}
		return nil
	})
	run := e.subscribe(e.Subscriber(e.Config(group, 2)), topic, h)
	l.waitSettled(e, "every message settled despite a handler panic", msgs)

	// The subscriber keeps running: later messages are handled too.
	more := keyedMessages([]string{"r"}, 3)
	e.Publish(pub, topic, more...)
	l.waitSettled(e, "messages published after the panic", more)
	e.stop(run)

	l.check(t, "p", expectCalls(perKey, map[int]int{2: 2}))
	l.check(t, "q", expectCalls(perKey, nil))
	l.check(t, "r", expectCalls(3, nil))
}
