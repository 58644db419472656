package kafka

import "testing"

// TestTypedNilOptionsAreSkipped: an option interface holding a nil
// function is skipped like a nil interface, never called.
func TestTypedNilOptionsAreSkipped(t *testing.T) {
	var shared Option = sharedOpt(nil)
	var sub SubscriberOption = subOpt(nil)
	if _, err := newPublisherConfig([]PublisherOption{nil, shared}); err != nil {
		t.Fatal(err)
	}
	if _, err := newSubscriberConfig([]SubscriberOption{nil, shared, sub, WithOptions(nil, shared)}); err != nil {
		t.Fatal(err)
	}
}
