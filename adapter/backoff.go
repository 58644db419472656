package adapter

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// The shape of every exponential backoff in ferry: the subscribers'
// redelivery backoff (package dispatch), the retry middleware's default
// policy and the AMQP adapter's reconnection loop all come from NewBackoff,
// so they grow and spread the same way.
const (
	// BackoffMultiplier is the growth factor between two waits.
	BackoffMultiplier = 2.0
	// BackoffRandomization spreads each wait uniformly over
	// [d·(1-r), d·(1+r)], so that many consumers failing (or reconnecting)
	// together do not retry in step: ±50 %, the default of
	// github.com/cenkalti/backoff/v4.
	BackoffRandomization = 0.5
)

// NewBackoff returns ferry's exponential backoff policy, a
// github.com/cenkalti/backoff/v4 ExponentialBackOff: about initial before
// the first retry, then BackoffMultiplier times longer after each further
// failure, capped at maxDelay, each wait randomised by ±BackoffRandomization.
// It never stops by itself (no MaxElapsedTime): the caller decides when to
// give up. A policy has state; use one per retried thing and Reset it when
// that thing succeeded. initial <= 0 is taken as 1 ns and maxDelay below
// initial as initial.
func NewBackoff(initial, maxDelay time.Duration) *backoff.ExponentialBackOff {
	initial = max(initial, 1)
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: BackoffRandomization,
		Multiplier:          BackoffMultiplier,
		MaxInterval:         max(maxDelay, initial),
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}
