package kafka

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
)

// pinPartitioner wraps the producer's partitioner so that a Publish whose
// ctx carries adapter.WithPartition(ctx, p) puts its records on partition
// p (franz-go hands the Publish ctx to the partitioner as Record.Context).
// When the topic has p partitions or fewer, the record is partitioned by
// the wrapped partitioner, as Spring Kafka's DeadLetterPublishingRecoverer
// lets the producer choose when its destination partition does not exist.
// Every other record goes to the wrapped partitioner unchanged.
type pinPartitioner struct {
	inner kgo.Partitioner
}

func (p *pinPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	in := p.inner.ForTopic(topic)
	t := pinTopic{in: in}
	t.backup, _ = in.(kgo.TopicBackupPartitioner)
	if nb, ok := in.(kgo.TopicPartitionerOnNewBatch); ok {
		// Only a partitioner with OnNewBatch may show it: franz-go holds
		// its partition lock while buffering for those.
		return &pinTopicOnNewBatch{pinTopic: t, nb: nb}
	}
	return &t
}

// pinned returns the partition the record's Publish asked for.
func pinned(r *kgo.Record) (int32, bool) {
	if r.Context == nil {
		return -1, false
	}
	return adapter.PartitionFrom(r.Context)
}

// pinTopic implements kgo.TopicBackupPartitioner whether or not the wrapped
// one does: franz-go then calls PartitionByBackup only.
type pinTopic struct {
	in     kgo.TopicPartitioner
	backup kgo.TopicBackupPartitioner
}

// RequiresConsistency: a pinned record is placed among all partitions, so
// that index n is partition n.
func (t *pinTopic) RequiresConsistency(r *kgo.Record) bool {
	if _, ok := pinned(r); ok {
		return true
	}
	return t.in.RequiresConsistency(r)
}

func (t *pinTopic) Partition(r *kgo.Record, n int) int {
	if p, ok := pinned(r); ok && int(p) < n {
		return int(p)
	}
	return t.in.Partition(r, n)
}

func (t *pinTopic) PartitionByBackup(r *kgo.Record, n int, it kgo.TopicBackupIter) int {
	if p, ok := pinned(r); ok && int(p) < n {
		return int(p)
	}
	if t.backup != nil {
		return t.backup.PartitionByBackup(r, n, it)
	}
	return t.in.Partition(r, n)
}

type pinTopicOnNewBatch struct {
	pinTopic
	nb kgo.TopicPartitionerOnNewBatch
}

func (t *pinTopicOnNewBatch) OnNewBatch() { t.nb.OnNewBatch() }
