package dispatch

import (
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Backoff is the redelivery backoff after a handler error: about Initial
// after the first failure, multiplied by Multiplier after each further
// failure, capped at Max, each wait with ±adapter.BackoffRandomization
// (50%) jitter. It is a github.com/cenkalti/backoff/v4 ExponentialBackOff
// (Policy), one per failing delivery. A handler error made with
// message.RedeliverAfter sets the wait itself instead.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
}

// Policy returns a new backoff policy with b's parameters
// (adapter.NewBackoff, with b.Multiplier when it is at least 1).
func (b Backoff) Policy() *backoff.ExponentialBackOff {
	p := adapter.NewBackoff(b.Initial, b.Max)
	if b.Multiplier >= 1 {
		p.Multiplier = b.Multiplier
	}
	return p
}

// Delay returns a backoff before redelivery after the given number of
// consecutive failures (1 for the first): the failures-th wait of a new
// Policy. The dispatcher keeps one policy per failing delivery instead.
func (b Backoff) Delay(failures int) time.Duration {
	p := b.Policy()
	d := p.NextBackOff()
	// 64 doublings reach any cap; the policy stays at MaxInterval after.
	for i := 1; i < min(failures, 64); i++ {
		d = p.NextBackOff()
	}
	return d
}

// backoffLocked schedules dl's redelivery after its handler failed with
// err: running -> backing off. The wait is err's own when it is a
// message.RedeliverAfterError (the retry middleware's way of waiting
// between attempts), else the next wait of dl's backoff policy, created
// at its first failure. dl stays its key's queue head, so the key's later
// deliveries wait behind it; other keys go on, and no worker is held
// during the wait. The timer is tagged with a new generation, so a timer
// that fires after Remove or Shutdown took dl out of backing off does
// nothing.
func (d *Dispatcher) backoffLocked(dl *Delivery, err error) {
	dl.failures++
	dl.Msg.Delivery.Attempt++
	dl.state = sBackoff
	dl.gen++
	gen := dl.gen
	wait, ok := message.RedeliveryDelay(err)
	if !ok {
		if dl.bo == nil {
			dl.bo = d.cfg.Backoff.Policy()
		}
		wait = dl.bo.NextBackOff()
	}
	d.backoffs[dl] = time.AfterFunc(wait, func() { d.backoffDone(dl, gen) })
}

// backoffDone runs on the timer's goroutine: backing off -> ready, unless
// dl left backing off meanwhile (removed) or shutdown began (then it stays
// backing off, never to run again).
func (d *Dispatcher) backoffDone(dl *Delivery, gen uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dl.state != sBackoff || dl.gen != gen {
		return
	}
	delete(d.backoffs, dl)
	if d.stopping {
		return
	}
	d.pushReady(dl)
	d.wakeLocked()
}
