package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/retry"
)

// ledgerSuffix names the companion topic that records settled dead
// letters on Kafka.
const ledgerSuffix = ".ferry-settled"

// kafkaDLT is a DLT on Kafka: the DLT topic read from its start to the end
// offsets taken when it was opened, and the ledger of settled ones.
type kafkaDLT struct {
	b       *broker
	adm     *kadm.Client
	topic   string
	ledger  string
	starts  map[int32]int64
	ends    map[int32]int64
	settled map[string]string // ledger key → action
	all     bool
	created bool        // the ledger topic exists
	writer  *kgo.Client // writes the ledger; nil until the first settle
}

// ledgerEntry is the value of a ledger record.
type ledgerEntry struct {
	Action string `json:"action"`
	ID     string `json:"id"`
	At     string `json:"at"`
}

func ledgerKey(p int32, o int64) string { return strconv.Itoa(int(p)) + "@" + strconv.FormatInt(o, 10) }

// kafkaPartitions returns topic's partition count, or an error saying it
// does not exist.
func kafkaPartitions(ctx context.Context, b *broker, topic string) (int, error) {
	tds, err := kadm.NewClient(b.KafkaClient()).ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("look up topic %q on %s: %w", topic, b, err)
	}
	td, ok := tds[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return 0, fmt.Errorf("topic %q not found on %s", topic, b)
	}
	if td.Err != nil {
		return 0, fmt.Errorf("topic %q: %w", topic, td.Err)
	}
	return len(td.Partitions), nil
}

// offsetRange returns the start and end offsets of topic's partitions.
func offsetRange(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, map[int32]int64, error) {
	so, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %q: %w", topic, err)
	}
	eo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("list end offsets of %q: %w", topic, err)
	}
	starts, ends := map[int32]int64{}, map[int32]int64{}
	var ferr error
	so.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && ferr == nil {
			ferr = o.Err
		}
		starts[o.Partition] = o.Offset
	})
	eo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && ferr == nil {
			ferr = o.Err
		}
		ends[o.Partition] = o.Offset
	})
	if ferr != nil {
		return nil, nil, fmt.Errorf("list offsets of %q: %w", topic, ferr)
	}
	return starts, ends, nil
}

func openKafkaDLT(ctx context.Context, b *broker, topic string, all bool) (*kafkaDLT, error) {
	if _, err := kafkaPartitions(ctx, b, topic); err != nil {
		return nil, err
	}
	d := &kafkaDLT{b: b, adm: kadm.NewClient(b.KafkaClient()), topic: topic, ledger: topic + ledgerSuffix, settled: map[string]string{}, all: all}
	var err error
	if d.starts, d.ends, err = offsetRange(ctx, d.adm, topic); err != nil {
		return nil, err
	}
	// The ledger, if there is one.
	tds, err := d.adm.ListTopics(ctx, d.ledger)
	if err != nil {
		return nil, fmt.Errorf("look up %q: %w", d.ledger, err)
	}
	if td, ok := tds[d.ledger]; ok && td.Err == nil {
		d.created = true
		ls, le, err := offsetRange(ctx, d.adm, d.ledger)
		if err != nil {
			return nil, err
		}
		err = readRange(ctx, d.b, d.ledger, ls, le, func(r *kgo.Record) error {
			var e ledgerEntry
			if json.Unmarshal(r.Value, &e) == nil {
				d.settled[string(r.Key)] = e.Action + " " + e.At
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", d.ledger, err)
		}
	}
	return d, nil
}

// endIdle is how long readRange waits for a record before it takes the
// partitions not yet at their end offset as read.
const endIdle = 5 * time.Second

// markerSlack is how many offsets short of its end a partition may be
// when readRange takes it as read after endIdle.
const markerSlack = 10

// readRange reads topic's partitions from starts to ends (exclusive),
// directly, in no group, and calls fn for each record in partition
// order.
func readRange(ctx context.Context, b *broker, topic string, starts, ends map[int32]int64, fn func(*kgo.Record) error) error {
	offs := map[int32]kgo.Offset{}
	left := map[int32]bool{}
	last := map[int32]int64{} // the last record seen per partition
	for p, end := range ends {
		if s := starts[p]; s < end {
			offs[p] = kgo.NewOffset().At(s)
			left[p] = true
			last[p] = -1
		}
	}
	if len(offs) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(b.KafkaClientOptions(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(left) > 0 {
		pctx, cancel := context.WithTimeout(ctx, endIdle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			// Nothing for endIdle. A partition a few offsets short of its
			// end may have no more records a consumer sees: the commit
			// markers of a transactional producer (a transactional Spring
			// KafkaTemplate) take offsets. Take those as read; keep waiting
			// for the others, and for a partition that gave no record yet
			// (a slow broker).
			for p := range left {
				if last[p] >= 0 && ends[p]-last[p] <= markerSlack {
					delete(left, p)
				}
			}
			continue
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		var ferr error
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if ferr != nil || !left[r.Partition] {
					return
				}
				if r.Offset >= ends[r.Partition] {
					delete(left, r.Partition)
					return
				}
				last[r.Partition] = r.Offset
				if err := fn(r); err != nil {
					ferr = err
					return
				}
				if r.Offset >= ends[r.Partition]-1 {
					delete(left, r.Partition)
				}
			}
			// Past the end already (records removed by compaction or
			// retention while reading).
			if p.HighWatermark > 0 && len(p.Records) == 0 && p.LogStartOffset >= ends[p.Partition] {
				delete(left, p.Partition)
			}
		})
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

func (d *kafkaDLT) total() int64 {
	var n int64
	for p, e := range d.ends {
		n += e - d.starts[p]
	}
	if !d.all {
		n -= int64(len(d.settled))
	}
	return max(n, 0)
}

func (d *kafkaDLT) scan(ctx context.Context, visit func(*dltEntry) error, flush func() error) error {
	err := readRange(ctx, d.b, d.topic, d.starts, d.ends, func(r *kgo.Record) error {
		k := ledgerKey(r.Partition, r.Offset)
		settled := d.settled[k]
		if settled != "" && !d.all {
			return nil
		}
		m := messageFromRecord(r)
		info, perr := retry.ParseDeadLetter(m)
		return visit(&dltEntry{msg: m, info: info, parseErr: perr, where: fmt.Sprintf("partition %d, offset %d", r.Partition, r.Offset),
			settled: settled, partition: r.Partition, offset: r.Offset})
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if ferr := flush(); err == nil {
		err = ferr
	}
	return err
}

func (d *kafkaDLT) settle(ctx context.Context, es []*dltEntry, action string) error {
	if !d.created {
		compact := "compact"
		_, err := d.adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, d.ledger)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create %q: %w", d.ledger, err)
		}
		d.created = true
	}
	at := time.Now().UTC().Format(timeFormat)
	recs := make([]*kgo.Record, 0, len(es))
	for _, e := range es {
		v, _ := json.Marshal(ledgerEntry{Action: action, ID: e.msg.ID, At: at})
		recs = append(recs, &kgo.Record{Topic: d.ledger, Key: []byte(ledgerKey(e.partition, e.offset)), Value: v})
	}
	if d.writer == nil {
		// A client of its own: the publisher's may have cached the ledger
		// topic as unknown before it was created, and would wait out its
		// metadata age (5 s) before producing.
		w, err := kgo.NewClient(append(d.b.KafkaClientOptions(), kgo.MetadataMinAge(100*time.Millisecond))...)
		if err != nil {
			return err
		}
		d.writer = w
	}
	if err := d.writer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("record in %q: %w", d.ledger, err)
	}
	for _, e := range es {
		d.settled[ledgerKey(e.partition, e.offset)] = action + " " + at
	}
	return nil
}

func (d *kafkaDLT) close() error {
	if d.writer != nil {
		d.writer.Close()
		d.writer = nil
	}
	return nil
}
