package dispatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// A blocked handler holds up only its own delivery: the other workers take
// over the deliveries its worker had claimed but not started.
func TestBlockedHandlerDoesNotHoldClaimedDeliveries(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var others atomic.Int64
	allDone := make(chan struct{})
	const n = 400
	d := New(context.Background(), func(ctx context.Context, m *message.Message) error {
		if m.Key == "slow" {
			close(started)
			<-release
			return nil
		}
		if others.Add(1) == n {
			close(allDone)
		}
		return nil
	}, Config{Concurrency: 2}, nil)
	defer d.Shutdown()
	defer close(release)
	batch := []*Delivery{{Msg: msg("slow", 0)}}
	for i := range n {
		batch = append(batch, &Delivery{Msg: msg(fmt.Sprint("k", i%50), i)})
	}
	if _, err := d.SubmitBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	<-started
	<-allDone
}
