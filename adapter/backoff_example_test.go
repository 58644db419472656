package adapter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/adapter"
)

// NewBackoff is the one exponential backoff of ferry: each wait is the
// doubling base ±50 %, capped.
func ExampleNewBackoff() {
	b := adapter.NewBackoff(100*time.Millisecond, time.Second)
	for _, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		d := b.NextBackOff()
		base *= time.Millisecond
		fmt.Println(d >= base/2 && d <= base*3/2)
	}
	// Output:
	// true
	// true
	// true
	// true
	// true
	// true
}

// A publisher that can place records on a partition reads the one a
// Publish call asked for with PartitionFrom.
func ExampleWithPartition() {
	ctx := adapter.WithPartition(context.Background(), 2)
	p, ok := adapter.PartitionFrom(ctx)
	fmt.Println(p, ok)
	_, ok = adapter.PartitionFrom(context.Background())
	fmt.Println(ok)
	// Output:
	// 2 true
	// false
}
