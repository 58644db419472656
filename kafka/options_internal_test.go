package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

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

// The publisher keeps Publish to its ctx during failover (doc.go): records
// in flight when the ctx ends may be failed, and a missing leader is
// looked up again within a second. A WithClientOptions choice wins.
func TestPublisherKeepsToItsContext(t *testing.T) {
	p, err := NewPublisher([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if v, _ := p.cl.OptValue(kgo.AllowIdempotentProduceCancellation).(bool); !v {
		t.Error("kgo.AllowIdempotentProduceCancellation is not set")
	}
	if v, _ := p.cl.OptValue(kgo.MetadataMinAge).(time.Duration); v != publisherMetadataMinAge {
		t.Errorf("kgo.MetadataMinAge = %v, want %v", v, publisherMetadataMinAge)
	}
	q, err := NewPublisher([]string{"127.0.0.1:1"}, WithClientOptions(kgo.MetadataMinAge(3*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if v, _ := q.cl.OptValue(kgo.MetadataMinAge).(time.Duration); v != 3*time.Second {
		t.Errorf("with WithClientOptions(kgo.MetadataMinAge(3s)): %v", v)
	}
}
