package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymsg/ferry/adapter/offsets"
)

// Replay after a crash or a rebalance (see the package doc, "What is
// replayed"). Every commit carries, in the commit's metadata string, the
// settled offsets above the commit point (offsets.EncodeSettled); a
// partition's next owner reads them back at its assignment and does not
// hand those records to the handler again.

// replayMetadataLimit is the most bytes of commit metadata ferry writes:
// under the broker's offset.metadata.max.bytes, 4096 by default. A broker
// with a lower limit refuses the metadata (OFFSET_METADATA_TOO_LARGE):
// the partition is then committed without it from then on.
const replayMetadataLimit = 4000

// errReplayTruncated is the Err of the EventCommitFailed reported when the
// settled offsets above a commit point do not all fit in the metadata.
var errReplayTruncated = errors.New("kafka: the settled offsets above the commit point do not all fit in the commit metadata: the ones left out are delivered again after a crash or a rebalance")

// partReplay is a partState's replay state, guarded by partState.mu.
type partReplay struct {
	skip      []offsets.Span  // settled spans read at assignment, above the records fetched so far
	sent      kgo.EpochOffset // last commit made
	sentMeta  string          // and its metadata
	noMeta    bool            // the broker refused metadata: commit without it
	truncated bool            // the last encoding left spans out (reported once per run of them)
}

// subReplay is a subscription's commit state.
type subReplay struct {
	mu      sync.Mutex // serializes commits, so that they reach the broker in order
	last    time.Time  // of the last periodic commit
	topicID [16]byte
}

// skipLocked settles the records of b from start on that the assignment's
// metadata says are settled, and returns how many it settled; the caller
// does not hand those to the dispatcher.
func (ps *partState) skipLocked(b *recBatch, start int) int {
	n := 0
	sk := ps.rp.skip
	for i := start; i < len(b.run.Items) && len(sk) > 0; i++ {
		off := b.run.Items[i].offset
		for len(sk) > 0 && sk[0].Last < off {
			sk = sk[1:]
		}
		if len(sk) > 0 && sk[0].First <= off {
			ps.log.Settle(&b.run, i)
			n++
		}
	}
	ps.rp.skip = sk
	if len(sk) == 0 {
		ps.rp.skip = nil
	}
	return n
}

// commitStateLocked returns what to commit for ps: the commit point and
// the metadata with the settled spans above it, how many spans were left
// out of the metadata, and whether any of it changed since the last
// commit.
func (ps *partState) commitStateLocked() (p kgo.EpochOffset, meta string, left int, changed bool) {
	var spans []offsets.Span
	var head *rec
	open := false
	ps.log.Beyond(func(r *rec, settled bool) {
		switch {
		case !settled:
			if head == nil {
				head = r
			}
			open = false
		case open:
			spans[len(spans)-1].Last = r.offset
		default:
			spans = append(spans, offsets.Span{First: r.offset, Last: r.offset})
			open = true
		}
	})
	if r := ps.log.Last(); r != nil {
		p = kgo.EpochOffset{Epoch: r.epoch, Offset: r.offset + 1}
	} else if head != nil {
		p = kgo.EpochOffset{Epoch: head.epoch, Offset: head.offset}
	} else if len(ps.rp.skip) == 0 {
		return p, "", 0, false // nothing handed out yet
	}
	// What the assignment's metadata said is settled beyond the records
	// fetched so far stays settled: carry it on.
	for _, s := range ps.rp.skip {
		if s.Last <= ps.last {
			continue
		}
		s.First = max(s.First, ps.last+1)
		if n := len(spans); n > 0 && s.First <= spans[n-1].Last+1 {
			spans[n-1].Last = max(spans[n-1].Last, s.Last)
			continue
		}
		spans = append(spans, s)
	}
	if p == (kgo.EpochOffset{}) && ps.log.Last() == nil && head == nil {
		// Nothing fetched: the committed point is where it was.
		p = ps.rp.sent
		if p == (kgo.EpochOffset{}) {
			return p, "", 0, false
		}
	}
	// Spans starting at the commit point move it.
	for len(spans) > 0 && spans[0].First <= p.Offset {
		p.Offset = max(p.Offset, spans[0].Last+1)
		spans = spans[1:]
	}
	if !ps.rp.noMeta {
		var n int
		meta, n = offsets.EncodeSettled(p.Offset, spans, replayMetadataLimit)
		left = len(spans) - n
	}
	return p, meta, left, p != ps.rp.sent || meta != ps.rp.sentMeta
}

// commitTick commits every partition whose commit state changed, once
// per commit interval (WithCommitInterval); markLoop calls it.
func (sub *subscription) commitTick() {
	if time.Since(sub.rp.last) < sub.cfg.commitInterval {
		return
	}
	sub.rp.last = time.Now()
	sub.commitParts(sub.current(), false)
}

// current returns the partitions tracked now.
func (sub *subscription) current() []*partState {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	states := make([]*partState, 0, len(sub.parts))
	for _, ps := range sub.parts {
		states = append(states, ps)
	}
	return states
}

// commitAll synchronously commits every partition's settled state.
func (sub *subscription) commitAll() { sub.commitParts(sub.current(), false) }

// commitParts commits the settled state of the given partitions, and
// kills them when final (a revocation). It is best effort: what a failed
// commit did not record is delivered again.
func (sub *subscription) commitParts(states []*partState, final bool) {
	type part struct {
		ps   *partState
		p    kgo.EpochOffset
		meta string
	}
	var parts []part
	for _, ps := range states {
		ps.mu.Lock()
		if ps.dead {
			ps.mu.Unlock()
			continue
		}
		p, meta, left, changed := ps.commitStateLocked()
		report := left > 0 && !ps.rp.truncated
		ps.rp.truncated = left > 0
		ps.mu.Unlock()
		if final {
			ps.kill()
		}
		if report {
			sub.commitFailed(ps.partition, fmt.Errorf("%w (%d ranges left out, at most %d bytes)", errReplayTruncated, left, replayMetadataLimit))
		}
		if changed {
			parts = append(parts, part{ps, p, meta})
		}
	}
	if len(parts) == 0 {
		return
	}
	sub.rp.mu.Lock()
	defer sub.rp.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if sub.rp.topicID == ([16]byte{}) {
		// OffsetCommit v10 names topics by ID.
		if td, err := kadm.NewClient(sub.cl).ListTopics(ctx, sub.topic); err == nil {
			sub.rp.topicID = td[sub.topic].ID
		}
	}
	resp, err := sub.send(ctx, func(t *kmsg.OffsetCommitRequestTopic) {
		for i := range parts {
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = parts[i].ps.partition, parts[i].p.Offset, parts[i].p.Epoch
			rp.Metadata = &parts[i].meta
			t.Partitions = append(t.Partitions, rp)
		}
	})
	if err != nil {
		sub.commitFailed(-1, err)
		return
	}
	var retry []part
	for _, t := range resp.Topics {
		for _, rp := range t.Partitions {
			for i := range parts {
				pt := &parts[i]
				if pt.ps.partition != rp.Partition {
					continue
				}
				perr := kerr.ErrorForCode(rp.ErrorCode)
				switch {
				case perr == nil:
					pt.ps.sentCommit(pt.p, pt.meta)
				case errors.Is(perr, kerr.OffsetMetadataTooLarge) && pt.meta != "":
					pt.ps.mu.Lock()
					pt.ps.rp.noMeta = true
					pt.ps.mu.Unlock()
					sub.commitFailed(pt.ps.partition, fmt.Errorf("%w: the broker's offset.metadata.max.bytes is below %d: committing without them", errReplayTruncated, replayMetadataLimit))
					pt.meta = ""
					retry = append(retry, *pt)
				default:
					sub.commitFailed(pt.ps.partition, perr)
				}
			}
		}
	}
	if len(retry) > 0 {
		resp, err := sub.send(ctx, func(t *kmsg.OffsetCommitRequestTopic) {
			for i := range retry {
				rp := kmsg.NewOffsetCommitRequestTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch = retry[i].ps.partition, retry[i].p.Offset, retry[i].p.Epoch
				t.Partitions = append(t.Partitions, rp)
			}
		})
		if err != nil {
			sub.commitFailed(-1, err)
			return
		}
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				if perr := kerr.ErrorForCode(rp.ErrorCode); perr != nil {
					sub.commitFailed(rp.Partition, perr)
				}
			}
		}
	}
}

// send sends one OffsetCommit for the topic as this member of the group.
func (sub *subscription) send(ctx context.Context, fill func(*kmsg.OffsetCommitRequestTopic)) (*kmsg.OffsetCommitResponse, error) {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = sub.group
	req.MemberID, req.Generation = sub.cl.GroupMetadata()
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic, t.TopicID = sub.topic, sub.rp.topicID
	fill(&t)
	req.Topics = append(req.Topics, t)
	return req.RequestWith(ctx, sub.cl)
}

// sentCommit records a commit the broker took.
func (ps *partState) sentCommit(p kgo.EpochOffset, meta string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.rp.sent, ps.rp.sentMeta = p, meta
}

// readSettled reads the group's committed offsets of newly assigned
// partitions and keeps, for each whose metadata is ferry's and matches
// its committed offset, the settled spans above it. On any error it keeps
// nothing: the partition is replayed from its committed offset, as
// without metadata.
func (sub *subscription) readSettled(cl *kgo.Client, states []*partState) {
	if len(states) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(sub.ctx, commitTimeout)
	defer cancel()
	resps, err := kadm.NewClient(cl).FetchOffsetsForTopics(ctx, sub.group, sub.topic)
	if err != nil {
		return
	}
	for _, ps := range states {
		or, ok := resps.Lookup(sub.topic, ps.partition)
		if !ok || or.Err != nil || or.At < 0 {
			continue
		}
		base, spans, ok := offsets.DecodeSettled(or.Metadata)
		if !ok || base != or.At {
			continue // not ferry's, or not written with this commit
		}
		ps.mu.Lock()
		ps.rp.skip = spans
		ps.rp.sent = kgo.EpochOffset{Epoch: or.LeaderEpoch, Offset: or.At}
		ps.rp.sentMeta = or.Metadata
		ps.mu.Unlock()
	}
}
