package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/kafka"
)

// TestFranzGoShareAutoAccept pins down the franz-go behaviour that share
// mode is built around: with a raw share-group client, a record of one
// poll that has no terminal acknowledgement is accepted by the next
// poll, and a release after that changes nothing: the record is never
// delivered again. (ferry never polls while it holds a record; see
// TestShareGroupReleaseRejectAndNoAutoAccept, where failed records of a
// poll always come back.) Should franz-go change this, this test says so.
func TestFranzGoShareAutoAccept(t *testing.T) {
	shareBackends(t, func(t *testing.T, brokers []string) {
		topic := uniqueTopic(t)
		group := "trap-" + topic
		p := newPublisher(t, brokers)
		if _, err := kadm.NewClient(p.Client()).CreateTopic(context.Background(), 1, -1, nil, topic); err != nil {
			t.Fatal(err)
		}
		setGroupConfig(t, brokers, group, map[string]string{"share.auto.offset.reset": "earliest"})
		publishN(t, p, topic, "m", 2)
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
			kgo.ShareMaxRecords(1), kgo.ShareMaxRecordsStrict(), kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		poll := func() *kgo.Record {
			for {
				fs := cl.PollRecords(ctx, 1)
				if ctx.Err() != nil {
					t.Fatalf("polling: %v", ctx.Err())
				}
				if rs := fs.Records(); len(rs) > 0 {
					return rs[0]
				}
			}
		}
		first := poll() // m-0, left without an ack, as a handler still running
		id := recordID(first)
		second := poll()          // accepts m-0
		first.Ack(kgo.AckRelease) // too late: already accepted
		second.Ack(kgo.AckAccept)
		publishN(t, p, topic, "marker", 1)
		for {
			r := poll()
			r.Ack(kgo.AckAccept)
			got := recordID(r)
			if got == id {
				t.Fatalf("%s came back (delivery %d) after it was left unacked across a poll: franz-go no longer auto-accepts it; share mode's design can be revisited", id, r.DeliveryCount())
			}
			if got == "marker-0" {
				return // m-0 was accepted by the second poll and is gone
			}
		}
	})
}

// recordID is the ferry-id header of a record.
func recordID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == kafka.HeaderID {
			return string(h.Value)
		}
	}
	return ""
}
