package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymsg/ferry/kafka"
)

// Injected faults answer real requests of the in-process kfake cluster
// (ControlKey), so the adapter and franz-go see exactly what a broker in
// trouble would send.

func newKfake(t *testing.T, brokers int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// kfakeSetup is a publisher, a topic and a ledger on a kfake cluster.
type kfakeSetup struct {
	c     *kfake.Cluster
	pub   *kafka.Publisher
	topic string
	l     *ledger
}

func newKfakeSetup(t *testing.T, brokers int) *kfakeSetup {
	t.Helper()
	c := newKfake(t, brokers)
	pub, err := kafka.NewPublisher(c.ListenAddrs(), kafka.WithTopicCreation(4, 1),
		kafka.WithClientOptions(kgo.ProducerLinger(time.Millisecond), kgo.MetadataMinAge(50*time.Millisecond),
			kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return &kfakeSetup{c: c, pub: pub, topic: name("rel_kfake"), l: newLedger()}
}

func (s *kfakeSetup) subscriber(t *testing.T, group string) *kafka.Subscriber {
	t.Helper()
	sub, err := kafka.NewSubscriber(s.c.ListenAddrs(), kafka.WithGroup(group), kafka.WithConcurrency(4),
		kafka.WithTopicCreation(4, 1), kafka.WithCommitInterval(100*time.Millisecond), fastGroup(),
		kafka.WithClientOptions(kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// ensureTopic creates the topic before the faults start.
func (s *kfakeSetup) ensureTopic(t *testing.T) {
	t.Helper()
	if err := s.pub.Publish(context.Background(), s.topic); err != nil {
		t.Fatal(err)
	}
}

// injector counts the requests a control function failed.
type injector struct {
	seen, failed atomic.Int64
	off          atomic.Bool
}

// control installs fn for requests of key on c: every nth request (from
// the first) is failed by fn until off is set. fn returns the response and
// error to hand back, as a kfake control function does.
func (in *injector) control(c *kfake.Cluster, key int16, every int64, fn func(kmsg.Request) (kmsg.Response, error)) {
	c.ControlKey(key, func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if in.off.Load() {
			c.DropControl()
			return nil, nil, false
		}
		if in.seen.Add(1)%every != 1 && every != 1 {
			return nil, nil, false
		}
		in.failed.Add(1)
		resp, err := fn(req)
		return resp, err, true
	})
}

var errInjected = errors.New("reliability: injected failure (connection closed)")

// produceError answers a produce request with code for every partition.
func produceError(code int16) func(kmsg.Request) (kmsg.Response, error) {
	return func(kreq kmsg.Request) (kmsg.Response, error) {
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil
	}
}

// commitError answers an offset commit with code for every partition.
func commitError(code int16) func(kmsg.Request) (kmsg.Response, error) {
	return func(kreq kmsg.Request) (kmsg.Response, error) {
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil
	}
}

// alternate returns fns[i%len] on the ith call.
func alternate(fns ...func(kmsg.Request) (kmsg.Response, error)) func(kmsg.Request) (kmsg.Response, error) {
	var n atomic.Int64
	return func(r kmsg.Request) (kmsg.Response, error) {
		return fns[int(n.Add(1)-1)%len(fns)](r)
	}
}

func closeConn(kmsg.Request) (kmsg.Response, error) { return nil, errInjected }

// run publishes with four goroutines and consumes with one group while
// inject runs, then waits for every acknowledged message.
func (s *kfakeSetup) run(t *testing.T, prefix string, inject func()) []string {
	t.Helper()
	sub := s.subscriber(t, "g")
	sb := subscribe(context.Background(), sub, s.topic, s.l.handle)
	stop := publishLoop(s.pub, s.topic, prefix, 4, 3*time.Second, s.l, func(i int) string { return fmt.Sprint(i % 32) })
	defer stop()
	inject()
	stop()
	lost := s.l.waitAcked(90 * time.Second)
	sb.running(t)
	sb.stop(t)
	return lost
}

func TestKfakeProduceRetriableErrors(t *testing.T) {
	s := newKfakeSetup(t, 1)
	s.ensureTopic(t)
	var in injector
	in.control(s.c, int16(kmsg.Produce), 2, alternate(
		produceError(kerr.NotLeaderForPartition.Code),
		produceError(kerr.RequestTimedOut.Code),
		closeConn,
	))
	lost := s.run(t, "p1", func() {
		s.l.waitUntil(60*time.Second, func() bool { return in.failed.Load() >= 30 && s.l.ackedCount() >= 500 })
		in.off.Store(true)
		s.l.waitAckedAtLeast(t, s.l.ackedCount()+100, 30*time.Second)
	})
	if in.failed.Load() < 30 {
		t.Errorf("only %d produce requests failed, want 30", in.failed.Load())
	}
	r := s.l.result()
	r.Fault, r.Adapter = "produce errors, retriable", "kafka (kfake)"
	r.Injection = "ControlKey(Produce): every 2nd request answered NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT or a closed connection"
	r.Extra = fmt.Sprintf("failed_requests=%d", in.failed.Load())
	t.Logf("publish errors: %v", s.l.errSamples())
	report(t, r, lost)
}

func TestKfakeProduceFatalErrors(t *testing.T) {
	s := newKfakeSetup(t, 1)
	s.ensureTopic(t)
	var in injector
	in.control(s.c, int16(kmsg.Produce), 3, produceError(kerr.InvalidRecord.Code))
	lost := s.run(t, "p2", func() {
		s.l.waitUntil(60*time.Second, func() bool { return in.failed.Load() >= 20 && s.l.ackedCount() >= 300 })
		in.off.Store(true)
		s.l.waitAckedAtLeast(t, s.l.ackedCount()+100, 30*time.Second)
	})
	r := s.l.result()
	if r.PubErrors == 0 {
		t.Errorf("%d produce requests failed with INVALID_RECORD but no Publish returned an error", in.failed.Load())
	}
	r.Fault, r.Adapter = "produce errors, not retriable", "kafka (kfake)"
	r.Injection = "ControlKey(Produce): every 3rd request answered INVALID_RECORD"
	r.Extra = fmt.Sprintf("failed_requests=%d (surfaced as Publish errors)", in.failed.Load())
	report(t, r, lost)
}

func TestKfakeFetchErrors(t *testing.T) {
	s := newKfakeSetup(t, 1)
	s.ensureTopic(t)
	var in injector
	in.control(s.c, int16(kmsg.Fetch), 3, alternate(
		closeConn,
		func(kreq kmsg.Request) (kmsg.Response, error) {
			resp := kreq.ResponseKind().(*kmsg.FetchResponse)
			resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
			return resp, nil
		},
	))
	lost := s.run(t, "p3", func() {
		s.l.waitUntil(60*time.Second, func() bool { return in.failed.Load() >= 30 && s.l.ackedCount() >= 500 })
		in.off.Store(true)
		s.l.waitAckedAtLeast(t, s.l.ackedCount()+100, 30*time.Second)
	})
	if in.failed.Load() < 30 {
		t.Errorf("only %d fetch requests failed, want 30", in.failed.Load())
	}
	r := s.l.result()
	r.Fault, r.Adapter = "fetch errors", "kafka (kfake)"
	r.Injection = "ControlKey(Fetch): every 3rd request answered with a closed connection or FETCH_SESSION_ID_NOT_FOUND"
	r.Extra = fmt.Sprintf("failed_requests=%d", in.failed.Load())
	report(t, r, lost)
}

// TestKfakeCommitFailures fails every offset commit of a first consumer,
// including the one at shutdown, then lets a second consumer of the same
// group start: it must receive everything the first one could not commit.
func TestKfakeCommitFailures(t *testing.T) {
	s := newKfakeSetup(t, 1)
	s.ensureTopic(t)
	var in injector
	in.control(s.c, int16(kmsg.OffsetCommit), 1, alternate(
		commitError(kerr.CoordinatorNotAvailable.Code),
		commitError(kerr.RequestTimedOut.Code),
		closeConn,
	))
	lost := s.run(t, "p4", func() {
		s.l.waitUntil(60*time.Second, func() bool { return in.failed.Load() >= 10 && s.l.ackedCount() >= 500 })
	})
	first := s.l.result()
	failedBefore := in.failed.Load()
	if len(lost) > 0 {
		t.Fatalf("first consumer lost %d messages", len(lost))
	}
	if failedBefore < 10 {
		t.Errorf("only %d commits failed, want 10", failedBefore)
	}
	// Commits work again: a new consumer of the group starts from the last
	// committed offsets, so it gets (again) what the first one handled.
	in.off.Store(true)
	lost = s.run(t, "second", func() {
		s.l.waitAckedAtLeast(t, first.Acked+200, 30*time.Second)
	})
	r := s.l.result()
	if r.Duplicated == 0 {
		t.Errorf("no message was redelivered although %d commits failed", failedBefore)
	}
	r.Fault, r.Adapter = "offset commit failures", "kafka (kfake)"
	r.Injection = "ControlKey(OffsetCommit): every commit of a first consumer fails (COORDINATOR_NOT_AVAILABLE, REQUEST_TIMED_OUT, closed connection); a second consumer of the group follows"
	r.Extra = fmt.Sprintf("failed_commits=%d", failedBefore)
	report(t, r, lost)
}

// TestKfakeCoordinatorAndLeaderMoves moves group coordinators and
// partition leaders around a three-broker cluster while publishing and
// consuming.
func TestKfakeCoordinatorAndLeaderMoves(t *testing.T) {
	s := newKfakeSetup(t, 3)
	s.ensureTopic(t)
	const moves = 6
	lost := s.run(t, "p5", func() {
		for range moves {
			s.l.waitAckedAtLeast(t, s.l.ackedCount()+150, 60*time.Second)
			s.c.RehashCoordinators()
			s.c.ShufflePartitionLeaders()
		}
		s.l.waitAckedAtLeast(t, s.l.ackedCount()+150, 60*time.Second)
	})
	r := s.l.result()
	r.Fault, r.Adapter = "coordinator and leader moves", "kafka (kfake)"
	r.Injection = fmt.Sprintf("3 brokers; RehashCoordinators + ShufflePartitionLeaders %d times mid-stream", moves)
	report(t, r, lost)
}
