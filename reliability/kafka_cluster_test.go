package reliability_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// Failover on the 3-broker Kafka cluster of scripts/services.sh (`up
// kafka-cluster`: brokers 1-3 and a controller-only node that the tests
// leave alone; RF 3, min.insync.replicas 2, acks=all from ferry).

// overrunMargin is how long after its ctx's deadline a Publish may return
// before it counts as hanging. franz-go notices an ended ctx only when it
// tries a record again (records in flight are failed too: the publisher
// sets kgo.AllowIdempotentProduceCancellation), and a retry that needs new
// metadata (no leader, NOT_ENOUGH_REPLICAS) waits for a refresh, at most
// one per kgo.MetadataMinAge (1 s in the publisher); the publisher may
// then take a second to ask the cluster why; and the machine is shared.
const overrunMargin = time.Second + time.Second + 2*time.Second

// deadlineWatch wraps a Publisher and records, for every Publish whose ctx
// has a deadline, how long after that deadline it returned.
type deadlineWatch struct {
	message.Publisher

	mu      sync.Mutex
	calls   int
	maxOver time.Duration // the largest return time minus deadline
	late    int           // calls that returned past deadline+overrunMargin
	samples []string      // the first 10 of them
}

func (w *deadlineWatch) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	dl, ok := ctx.Deadline()
	err := w.Publisher.Publish(ctx, topic, msgs...)
	if ok {
		over := time.Since(dl)
		w.mu.Lock()
		if w.calls == 0 || over > w.maxOver {
			w.maxOver = over
		}
		w.calls++
		if over > overrunMargin {
			w.late++
			if len(w.samples) < 10 {
				w.samples = append(w.samples, fmt.Sprintf("returned %v after its deadline (err %v)", over.Round(time.Millisecond), err))
			}
		}
		w.mu.Unlock()
	}
	return err
}

// summary is "publish_calls=N max_past_deadline=D" (D negative: every call
// returned before its deadline).
func (w *deadlineWatch) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("publish_calls=%d max_past_deadline=%v", w.calls, w.maxOver.Round(10*time.Millisecond))
}

// check fails the test if some Publish outlived its ctx by more than
// overrunMargin.
func (w *deadlineWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.late > 0 {
		t.Errorf("%d of %d Publish calls outlived their context by more than %v: %v", w.late, w.calls, overrunMargin, w.samples)
	}
}

// clusterLeader returns the node id leading partition 0 of topic, waiting
// for the topic to have one.
func clusterLeader(t *testing.T, pub *kafka.Publisher, topic string) int32 {
	t.Helper()
	adm := kadm.NewClient(pub.Client())
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		md, err := adm.ListTopics(ctx, topic)
		cancel()
		if err == nil {
			if d, ok := md[topic]; ok && d.Err == nil {
				if p, ok := d.Partitions[0]; ok && p.Leader >= 1 && len(p.ISR) == 3 {
					return p.Leader
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has no leader with 3 in-sync replicas after 60s (last: %v)", topic, err)
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster's metadata
	}
}

// clusterRun runs 4 publishers and a consumer group on a new topic of the
// cluster, lets fault happen once 300 messages are acknowledged, keeps
// going until 300 more are, and reports. It returns the publishers'
// deadline watch.
func clusterRun(t *testing.T, fault, injection string, do func(pub *kafka.Publisher, topic string) string) *deadlineWatch {
	brokers := testenv.NeedKafkaCluster(t)
	topic := name("rel_cluster")
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, 3),
		kafka.WithClientOptions(kgo.ProducerLinger(2*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deleteKafkaTopics(t, pub, topic)
	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup(topic+"_g"), kafka.WithConcurrency(4),
		kafka.WithTopicCreation(1, 3), kafka.WithCommitInterval(200*time.Millisecond), fastGroup())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	l := newLedger()
	sb := subscribe(context.Background(), sub, topic, l.handle)
	watch := &deadlineWatch{Publisher: pub}
	stop := publishLoop(watch, topic, "c", 4, 10*time.Second, l, func(i int) string { return fmt.Sprint(i % 64) })
	defer stop()
	l.waitAckedAtLeast(t, 300, 90*time.Second)
	before := l.ackedCount()
	start := time.Now()
	extra := do(pub, topic)
	took := time.Since(start)
	resume := time.Now()
	l.waitAckedAtLeast(t, l.ackedCount()+300, 120*time.Second)
	stop()
	lost := l.waitAcked(3 * time.Minute)
	sb.running(t)
	sb.stop(t)
	r := l.result()
	r.Fault, r.Adapter, r.Injection = fault, "kafka (3-broker cluster)", injection
	r.Extra = fmt.Sprintf("acked_before=%d fault_took=%v then_300_more_acked_in=%v %s %s", before,
		took.Round(100*time.Millisecond), time.Since(resume).Round(100*time.Millisecond), watch.summary(), extra)
	report(t, r, lost)
	if errs := l.errSamples(); len(errs) > 0 {
		var b strings.Builder
		for e, n := range errs {
			fmt.Fprintf(&b, "\n  %d× %s", n, e)
		}
		t.Logf("publish errors:%s", b.String())
	}
	return watch
}

// TestKafkaClusterLeaderKill sends SIGKILL to the leader of the partition
// being written and read: every acknowledged message is consumed, and every
// Publish during the election succeeds or fails without outliving its
// 10 s context (by more than overrunMargin).
func TestKafkaClusterLeaderKill(t *testing.T) {
	needFaults(t)
	watch := clusterRun(t, "leader SIGKILL", "services.sh kill kafka-cluster-<leader> mid-stream, 4 publishers and a 4-handler group", func(pub *kafka.Publisher, topic string) string {
		leader := clusterLeader(t, pub, topic)
		testenv.KillClusterNode(t, int(leader))
		t.Cleanup(func() { testenv.StartClusterNode(t, int(leader)) })
		return fmt.Sprintf("killed_node=%d", leader)
	})
	watch.check(t)
}

// TestKafkaClusterRollingRestart stops and starts each of the three nodes
// in turn under load: nothing acknowledged is lost.
func TestKafkaClusterRollingRestart(t *testing.T) {
	needFaults(t)
	clusterRun(t, "rolling restart", "services.sh stop+start kafka-cluster-1, -2, -3 in turn under load", func(pub *kafka.Publisher, topic string) string {
		for n := 1; n <= 3; n++ {
			testenv.StopClusterNode(t, n)
			// No wait for the node to be back in sync: the next one may
			// leave fewer than min.insync.replicas, and then Publish errors
			// (counted) are allowed; a lost message is not. (Waiting for 3
			// in-sync replicas each time made the test take 2.5 min.)
			testenv.StartClusterNode(t, n)
		}
		return ""
	})
}
