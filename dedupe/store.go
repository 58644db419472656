package dedupe

import (
	"context"
	"time"
)

// Store records which keys are being processed and which were processed.
// It is the contract every dedupe store (memory, SQL) keeps; the shared
// suite in package dedupetest holds each implementation to it.
//
// A key is in one of three states: free (never seen, released, its lease
// expired, or its processed mark older than the store's retention TTL),
// claimed (a handler is running it, until the lease ends) or processed.
// Implementations must be safe for concurrent use by many goroutines and,
// for shared stores such as SQL, by many processes: two Claims of one free
// key never both return Claimed.
type Store interface {
	// Claim tries to take key for a handler run that should end within
	// lease. It returns Claimed with a fresh Token when the key was free,
	// Processed when it was processed within the retention TTL, and
	// InProgress when another claim holds it and its lease has not ended.
	// An expired lease (the consumer crashed or hung) counts as free.
	Claim(ctx context.Context, key string, lease time.Duration) (ClaimResult, error)

	// Extend pushes the lease of the claim identified by token to lease
	// from now. It returns ErrLeaseLost when that claim no longer holds
	// the key (it was released, completed, or expired and claimed again).
	Extend(ctx context.Context, key string, token Token, lease time.Duration) error

	// Complete marks key processed: later Claims return Processed until
	// the retention TTL has passed. It succeeds whether or not a claim
	// holds the key (a handler that succeeded has processed the message,
	// even if its lease ran out), and is idempotent.
	Complete(ctx context.Context, key string) error

	// Release frees key after a failed handler run so that a redelivery
	// runs it again. It only frees the claim identified by token: a
	// release by a claim whose lease expired and was taken over, or of a
	// processed key, does nothing and returns nil.
	Release(ctx context.Context, key string, token Token) error
}

// Token identifies one claim of a key. Release and Extend take it so that a
// consumer whose lease expired cannot free or extend a newer claim.
type Token int64

// Status is the outcome of Store.Claim.
type Status uint8

// Claim outcomes.
const (
	// Claimed: the caller holds the key and must Complete or Release it.
	Claimed Status = iota + 1
	// Processed: the key was processed; skip the message.
	Processed
	// InProgress: another claim holds the key and its lease has not ended.
	InProgress
)

// String returns the status name.
func (s Status) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case Processed:
		return "processed"
	case InProgress:
		return "in progress"
	}
	return "invalid status"
}

// ClaimResult is what Store.Claim returns.
type ClaimResult struct {
	// Status says whether the key was claimed, processed or in progress.
	Status Status
	// Token identifies the claim when Status is Claimed; zero otherwise.
	Token Token
}
