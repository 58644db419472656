package amqp

import "testing"

// TestTypedNilOptionsAreSkipped: an option interface holding a nil
// function is skipped like a nil interface, never called.
func TestTypedNilOptionsAreSkipped(t *testing.T) {
	var shared Option = sharedOpt(nil)
	var pub PublisherOption = pubOpt(nil)
	var sub SubscriberOption = subOpt(nil)
	if _, err := newPublisherConfig([]PublisherOption{nil, shared, pub, WithOptions(nil, shared)}); err != nil {
		t.Fatal(err)
	}
	if _, err := newSubscriberConfig([]SubscriberOption{nil, shared, sub, WithOptions(nil, shared)}); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultPrefetchFitsAMQP: the default prefetch grows with the
// concurrency but never past AMQP's 16-bit limit.
func TestDefaultPrefetchFitsAMQP(t *testing.T) {
	for n, want := range map[int]int{1: 128, 8: 128, 20: 320, 4096: 65535, 65535: 65535} {
		c, err := newSubscriberConfig([]SubscriberOption{WithConcurrency(n)})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.prefetchCount(); got != want {
			t.Errorf("concurrency %d: prefetch %d, want %d", n, got, want)
		}
	}
}
