package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// The Java side: interop/spring-kafka.
const springKafkaDltMain = "com.github.ferrymsg.ferry.interop.springkafka.SpringKafkaDlt"

// springDLTRead is a READ line of SpringKafkaDlt listen: what Spring's
// @KafkaListener got bound from a dead-letter record's headers.
type springDLTRead struct {
	ReceivedPartition     int32  `json:"receivedPartition"`
	ReceivedOffset        int64  `json:"receivedOffset"`
	Key                   string `json:"key"`
	Value                 string `json:"value"`
	OriginalTopic         string `json:"originalTopic"`
	OriginalPartition     int32  `json:"originalPartition"`
	OriginalOffset        int64  `json:"originalOffset"`
	OriginalTimestamp     int64  `json:"originalTimestamp"`
	OriginalTimestampType string `json:"originalTimestampType"`
	OriginalGroup         string `json:"originalGroup"`
	ExceptionFqcn         string `json:"exceptionFqcn"`
	ExceptionCauseFqcn    string `json:"exceptionCauseFqcn"`
	ExceptionMessage      string `json:"exceptionMessage"`
	ExceptionStacktrace   string `json:"exceptionStacktrace"`
}

// errNoSuchOrder is the ferry handler's failure, wrapped as Go code wraps
// errors (Spring's listener throws IllegalStateException("no such order")).
var errNoSuchOrder = errors.New("no such order")

// TestSpringKafkaDeadLetterRecords: Spring Kafka 4.1's own
// DeadLetterPublishingRecoverer and ferry's retry middleware with
// SpringHeaders and SpringDeadLetterTopic each dead-letter the same
// failing record (produced to partition 2 of a 4-partition topic), from a
// CreateTime and from a LogAppendTime topic, on the real broker. Their DLT
// records must have the same kafka_dlt-* header names, each once, the
// original-* headers byte for byte equal (topic, 4-byte partition, 8-byte
// offset and timestamp, timestamp type), the same partition of <topic>-dlt
// (the original's; from a third topic whose record is on partition 3 and
// whose DLT has 3 partitions, the one both fall back to), key, value and
// original headers, and exception headers of the same
// layout (package retry's mapping). Then a Spring @KafkaListener whose
// parameters bind every DLT header with a required @Header reads all six
// records, Spring's and ferry's, and gets ferry's values.
func TestSpringKafkaDeadLetterRecords(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	cp := client(t, "springkafka")
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	base := name(t)
	create := base + ".create"
	appendTime := base + ".logappend"
	fewer := base + ".fewer" // its DLT has 3 partitions: the record's partition 3 is missing there
	origTopics := []string{create, appendTime, fewer}
	var topics []string
	for _, tp := range origTopics {
		topics = append(topics, tp, tp+retry.SpringDeadLetterSuffix)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topics...) })
	for _, tc := range []struct {
		topic   string
		cfg     map[string]*string
		dltSize int32
	}{
		{create, nil, 4},
		{appendTime, map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")}, 4},
		{fewer, nil, 3},
	} {
		if _, err := adm.CreateTopic(ctx, 4, 1, tc.cfg, tc.topic); err != nil {
			t.Fatalf("create %s: %v", tc.topic, err)
		}
		if _, err := adm.CreateTopic(ctx, tc.dltSize, 1, tc.cfg, tc.topic+retry.SpringDeadLetterSuffix); err != nil {
			t.Fatalf("create %s: %v", tc.topic+retry.SpringDeadLetterSuffix, err)
		}
	}

	// The failing record, on partition 2, not the key's ("order-7" hashes
	// to partition 1 of 4): Spring keeps the partition number, and a DLT
	// record placed by its key would land elsewhere. On the fewer topic, on
	// partition 3, which its DLT lacks: Spring then lets the producer
	// choose (by key), and so must ferry.
	pub, err := kafka.NewPublisher(brokers, kafka.WithoutTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const partition = 2
	orig := map[string]*message.Message{}
	for _, tp := range origTopics {
		m := &message.Message{Key: "order-7", Payload: []byte(`{"id":"order-7"}`), Headers: map[string]string{"app": "orders"}, Time: time.UnixMilli(1_700_000_000_123)}
		p := int32(partition)
		if tp == fewer {
			p = 3
		}
		if err := pub.Publish(adapter.WithPartition(ctx, p), tp, m); err != nil {
			t.Fatal(err)
		}
		orig[tp] = m
	}
	origRecs := records(t, ctx, brokers, origTopics, len(origTopics))

	// Spring's recoverer.
	springGroup, ferryGroup := base+".spring", base+".ferry"
	recovered := run(t, "Spring DeadLetterPublishingRecoverer", "RECOVERED", "java", "-cp", cp, springKafkaDltMain,
		"recover", strings.Join(brokers, ","), springGroup, strings.Join(origTopics, ","))
	if len(recovered) != len(origTopics) {
		t.Fatalf("Spring recovered %d records, want %d: %q", len(recovered), len(origTopics), recovered)
	}

	// ferry's middleware.
	deadLettered := make(chan retry.DeadLetterEvent, 4)
	mw, err := retry.New(retry.WithMaxAttempts(1), retry.WithDeadLetter(pub), retry.SpringHeaders(),
		retry.WithDeadLetterTopic(retry.SpringDeadLetterTopic),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) { deadLettered <- ev }))
	if err != nil {
		t.Fatal(err)
	}
	h := message.Chain(func(context.Context, *message.Message) error {
		return fmt.Errorf("load order 7: %w", errNoSuchOrder)
	}, mw)
	for _, tp := range origTopics {
		sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup(ferryGroup), kafka.WithoutTopicCreation())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		subscribe(t, sub, tp, h)
	}
	for range origTopics {
		select {
		case ev := <-deadLettered:
			if ev.PublishErr != nil {
				t.Fatalf("ferry's dead-letter publish: %v", ev.PublishErr)
			}
		case <-time.After(wait):
			t.Fatal("ferry dead-lettered nothing")
		}
	}

	var dlts []string
	for _, tp := range origTopics {
		dlts = append(dlts, tp+retry.SpringDeadLetterSuffix)
	}
	dead := records(t, ctx, brokers, dlts, 2*len(origTopics))
	dltPartition := map[string]int32{} // of ferry's DLT record, by original topic
	for _, tp := range origTopics {
		o := origRecs[tp][0]
		wantType := "CreateTime"
		if tp == appendTime {
			wantType = "LogAppendTime"
			if o.Timestamp.Equal(orig[tp].Time) {
				t.Fatalf("%s: the record kept the producer's timestamp; the topic is not LogAppendTime", tp)
			}
		}
		byGroup := map[string]*kgo.Record{}
		for _, r := range dead[tp+retry.SpringDeadLetterSuffix] {
			byGroup[string(lastHeader(r, retry.HeaderSpringOriginalConsumerGroup))] = r
		}
		spring, ferry := byGroup[springGroup], byGroup[ferryGroup]
		if spring == nil || ferry == nil {
			t.Fatalf("%s-dlt: records of groups %q, want %s and %s", tp, slices.Collect(maps.Keys(byGroup)), springGroup, ferryGroup)
		}
		t.Logf("%s: Spring's DLT record headers:\n%s", tp, dumpHeaders(spring))
		t.Logf("%s: ferry's DLT record headers:\n%s", tp, dumpHeaders(ferry))

		// Same names, each once.
		if s, f := dltNames(t, spring), dltNames(t, ferry); !slices.Equal(s, f) {
			t.Errorf("%s: kafka_dlt-* headers: Spring %q, ferry %q", tp, s, f)
		}
		// The original-* headers, byte for byte, and what they must say.
		want := map[string][]byte{
			retry.HeaderSpringOriginalTopic:         []byte(tp),
			retry.HeaderSpringOriginalPartition:     binary.BigEndian.AppendUint32(nil, uint32(o.Partition)),
			retry.HeaderSpringOriginalOffset:        binary.BigEndian.AppendUint64(nil, uint64(o.Offset)),
			retry.HeaderSpringOriginalTimestamp:     binary.BigEndian.AppendUint64(nil, uint64(o.Timestamp.UnixMilli())),
			retry.HeaderSpringOriginalTimestampType: []byte(wantType),
		}
		for k, w := range want {
			if s, f := lastHeader(spring, k), lastHeader(ferry, k); !bytes.Equal(s, w) || !bytes.Equal(f, w) {
				t.Errorf("%s: %s: Spring %x, ferry %x, want %x", tp, k, s, f, w)
			}
		}
		// Where the records go and what they carry.
		dltPartition[tp] = ferry.Partition
		if tp == fewer && spring.Partition != ferry.Partition {
			t.Errorf("%s: the DLT lacks partition 3: Spring's record went to partition %d (the producer's choice by key), ferry's to %d",
				tp, spring.Partition, ferry.Partition)
		}
		for who, r := range map[string]*kgo.Record{"Spring": spring, "ferry": ferry} {
			if tp != fewer && r.Partition != partition {
				t.Errorf("%s: %s's DLT record on partition %d, want %d (the original's)", tp, who, r.Partition, partition)
			}
			if !bytes.Equal(r.Key, o.Key) || !bytes.Equal(r.Value, o.Value) {
				t.Errorf("%s: %s's DLT record key %q value %q, want the original's %q %q", tp, who, r.Key, r.Value, o.Key, o.Value)
			}
			for _, hk := range []string{"app", kafka.HeaderID} {
				if !bytes.Equal(lastHeader(r, hk), lastHeader(o, hk)) {
					t.Errorf("%s: %s's DLT record header %s = %q, want the original's %q", tp, who, hk, lastHeader(r, hk), lastHeader(o, hk))
				}
			}
		}
		// The exception headers: Spring's, as its recoverer writes them,
		// and ferry's mapping of the Go error (retry's package doc).
		checkException(t, tp, "Spring", spring,
			"org.springframework.kafka.listener.ListenerExecutionFailedException", "java.lang.IllegalStateException", "no such order")
		checkException(t, tp, "ferry", ferry, "*fmt.wrapError", "*errors.errorString", "load order 7: no such order")
		if got, want := string(lastHeader(ferry, retry.HeaderSpringExceptionStacktrace)),
			"*fmt.wrapError: load order 7: no such order\nCaused by: *errors.errorString: no such order\n"; got != want {
			t.Errorf("%s: ferry's stack trace %q, want %q", tp, got, want)
		}
	}

	// Spring's @KafkaListener on the DLTs, every DLT header a required
	// @Header parameter.
	lines := run(t, "Spring @KafkaListener on the DLTs", "", "java", "-cp", cp, springKafkaDltMain,
		"listen", strings.Join(brokers, ","), base+".spring-dlt", strings.Join(dlts, ","), strconv.Itoa(2*len(origTopics)))
	var reads []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "FAILED "); ok {
			t.Errorf("Spring's listener could not take a DLT record: %s", rest)
		}
		if rest, ok := strings.CutPrefix(l, "READ "); ok {
			reads = append(reads, rest)
		}
	}
	got := decode[springDLTRead](t, reads)
	ferryReads := 0
	for _, r := range got {
		if r.OriginalGroup != ferryGroup {
			continue
		}
		ferryReads++
		o := origRecs[r.OriginalTopic]
		if len(o) != 1 {
			t.Errorf("Spring read original topic %q from ferry's record", r.OriginalTopic)
			continue
		}
		wantType := "CreateTime"
		if r.OriginalTopic == appendTime {
			wantType = "LogAppendTime"
		}
		want := springDLTRead{
			ReceivedPartition: dltPartition[r.OriginalTopic], ReceivedOffset: r.ReceivedOffset, Key: "order-7", Value: `{"id":"order-7"}`,
			OriginalTopic: r.OriginalTopic, OriginalPartition: o[0].Partition, OriginalOffset: o[0].Offset,
			OriginalTimestamp: o[0].Timestamp.UnixMilli(), OriginalTimestampType: wantType, OriginalGroup: ferryGroup,
			ExceptionFqcn: "*fmt.wrapError", ExceptionCauseFqcn: "*errors.errorString", ExceptionMessage: "load order 7: no such order",
			ExceptionStacktrace: "*fmt.wrapError: load order 7: no such order\nCaused by: *errors.errorString: no such order\n",
		}
		if r != want {
			t.Errorf("Spring's @KafkaListener bound from ferry's record\n%+v\nwant\n%+v", r, want)
		}
	}
	if len(got) != 2*len(origTopics) || ferryReads != len(origTopics) {
		t.Errorf("Spring's listener read %d records (%d of ferry's), want %d (%d)", len(got), ferryReads, 2*len(origTopics), len(origTopics))
	}
}

// checkException checks the exception headers of a DLT record: the type,
// the cause type, a message ending with the cause's text, and a stack
// trace in printStackTrace's layout: "<fqcn>: ..." first, a "Caused by:
// <cause>: <text>" line after.
func checkException(t *testing.T, topic, who string, r *kgo.Record, fqcn, cause, msg string) {
	t.Helper()
	h := func(k string) string { return string(lastHeader(r, k)) }
	if h(retry.HeaderSpringExceptionFQCN) != fqcn || h(retry.HeaderSpringExceptionCauseFQCN) != cause {
		t.Errorf("%s: %s: exception %q cause %q, want %q %q", topic, who, h(retry.HeaderSpringExceptionFQCN), h(retry.HeaderSpringExceptionCauseFQCN), fqcn, cause)
	}
	if !strings.HasSuffix(h(retry.HeaderSpringExceptionMessage), msg) {
		t.Errorf("%s: %s: exception message %q, want it to end with %q", topic, who, h(retry.HeaderSpringExceptionMessage), msg)
	}
	st := h(retry.HeaderSpringExceptionStacktrace)
	if !strings.HasPrefix(st, fqcn+": ") || !strings.Contains(st, "\nCaused by: "+cause+": no such order\n") {
		t.Errorf("%s: %s: stack trace does not start with %q and hold a %q line:\n%s", topic, who, fqcn+": ", "Caused by: "+cause+": no such order", st)
	}
}

// records consumes n records of topics from the start, by topic in
// offset order.
func records(t *testing.T, ctx context.Context, brokers, topics []string, n int) map[string][]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	got, count := map[string][]*kgo.Record{}, 0
	for count < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %q", count, n, topics)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Topic] = append(got[r.Topic], r)
			count++
		})
	}
	return got
}

func lastHeader(r *kgo.Record, k string) []byte {
	var v []byte
	for _, h := range r.Headers {
		if h.Key == k {
			v = h.Value
		}
	}
	return v
}

// dltNames returns the record's kafka_dlt-* header names, sorted, and
// fails t on a name written twice.
func dltNames(t *testing.T, r *kgo.Record) []string {
	t.Helper()
	var names []string
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, retry.HeaderSpringPrefix) {
			if slices.Contains(names, h.Key) {
				t.Errorf("header %s written twice", h.Key)
			}
			names = append(names, h.Key)
		}
	}
	slices.Sort(names)
	return names
}

func dumpHeaders(r *kgo.Record) string {
	var b strings.Builder
	for _, h := range r.Headers {
		v := string(h.Value)
		if len(v) > 160 {
			v = v[:160] + "..."
		}
		fmt.Fprintf(&b, "  %s = %q\n", h.Key, v)
	}
	return b.String()
}
