package dispatch

import (
	"math/rand/v2"
	"time"
)

// Backoff is the redelivery backoff after a handler error: Initial after the
// first failure, multiplied by Multiplier after each further failure, capped
// at Max, with ±20% jitter.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
}

// Delay returns the backoff before redelivery after the given number of
// consecutive failures (1 for the first).
func (b Backoff) Delay(failures int) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < failures && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	d *= 0.8 + 0.4*rand.Float64()
	return time.Duration(d)
}

// backoffLocked schedules dl's redelivery: running -> backing off. dl stays
// its key's queue head, so the key's later deliveries wait behind it;
// other keys go on, and no worker is held during the wait. The timer is
// tagged with a new generation, so a timer that fires after Remove or
// Shutdown took dl out of backing off does nothing.
func (d *Dispatcher) backoffLocked(dl *Delivery) {
	dl.failures++
	dl.Msg.Delivery.Attempt++
	dl.state = sBackoff
	dl.gen++
	gen := dl.gen
	d.backoffs[dl] = time.AfterFunc(d.cfg.Backoff.Delay(int(dl.failures)), func() { d.backoffDone(dl, gen) })
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
