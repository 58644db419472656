// Package dispatch is the keyed, ordered dispatcher every ferry adapter uses
// to run handlers.
//
// An adapter submits deliveries in broker order. The dispatcher runs up to
// Concurrency handlers at once, never two deliveries with the same non-empty
// key at once, and same-key deliveries strictly in submission order. A
// handler error or panic makes it run the same delivery again after an
// exponential backoff, before any later delivery with that key; other keys
// keep flowing meanwhile (a worker is not held during the backoff). Each
// delivery whose handler returned nil is reported to the adapter's settle
// callback, which commits or acks it. Deliveries with an empty key have no
// ordering constraint.
//
// Workers take ready deliveries a fair share at a time (up to 64) under one
// lock acquisition, so the hand-off costs little per message. A claimed
// delivery that has not started is not tied to its worker: an idle worker
// steals it, and Remove and Shutdown drop it, so a slow handler holds up
// only its own delivery (and later ones of its key).
//
// Submit blocks while MaxPending deliveries are accepted but not settled,
// which is the adapters' backpressure. Remove drops the deliveries of revoked
// partitions; Shutdown stops intake, lets in-flight handlers finish within
// the drain timeout, then cancels their context.
package dispatch
