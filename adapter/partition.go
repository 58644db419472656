package adapter

import "context"

// partitionKey is the context key of WithPartition.
type partitionKey struct{}

// WithPartition returns a copy of ctx that asks the Publish call it is
// given to to write every message to partition p of the topic, instead of
// the partition the message's key hashes to. It is the publish-side twin
// of Spring Kafka's ProducerRecord partition: the retry middleware uses it
// in its Spring header profile to dead-letter a record to the same
// partition number of the DLT, as Spring's DeadLetterPublishingRecoverer
// does.
//
// The kafka adapter honours it: when the topic has more than p
// partitions, the records go to partition p; otherwise they are
// partitioned as without it (by key), as Spring's recoverer falls back
// when the partition does not exist. Adapters without partitions (amqp)
// and inmem ignore it. A negative p is ignored.
func WithPartition(ctx context.Context, p int32) context.Context {
	if ctx == nil || p < 0 {
		return ctx
	}
	return context.WithValue(ctx, partitionKey{}, p)
}

// PartitionFrom returns the partition WithPartition put in ctx, and
// whether there is one. A publisher that can place records on a partition
// calls it.
func PartitionFrom(ctx context.Context) (int32, bool) {
	if ctx == nil {
		return -1, false
	}
	p, ok := ctx.Value(partitionKey{}).(int32)
	return p, ok
}
