package reliability_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// connLog records a Publisher's or Subscriber's connection state changes
// (amqp.WithOnStateChange) and lets the test wait for one.
type connLog struct {
	mu      sync.Mutex
	changes []amqp.StateChange
	at      []time.Time
	changed chan struct{}
}

func newConnLog() *connLog { return &connLog{changed: make(chan struct{}, 1)} }

func (c *connLog) record(sc amqp.StateChange) {
	c.mu.Lock()
	c.changes = append(c.changes, sc)
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *connLog) all() []amqp.StateChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]amqp.StateChange(nil), c.changes...)
}

// count is how many connections were opened.
func (c *connLog) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, sc := range c.changes {
		if sc.State == amqp.StateConnected {
			n++
		}
	}
	return n
}

// connected returns the URL of the last connection opened, and when.
func (c *connLog) connected() (string, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.changes) - 1; i >= 0; i-- {
		if c.changes[i].State == amqp.StateConnected {
			return c.changes[i].URL, c.at[i]
		}
	}
	return "", time.Time{}
}

// waitReconnected waits until a connection other than to avoid was opened
// after since; it returns its URL and time.
func (c *connLog) waitReconnected(t *testing.T, since time.Time, avoid string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u, at := c.connected()
		if at.After(since) {
			if port(u) == port(avoid) {
				t.Fatalf("reconnected to %s, the node that was killed", u)
			}
			return u, at
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("no reconnection within %v of the kill; state changes: %+v", timeout, c.changes)
		}
	}
}

// port returns the port of a broker URL ("" if none).
func port(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Port()
}

// nodeOf returns the cluster node number (1-3) of a node URL, 0 if none.
func nodeOf(urls []string, raw string) int {
	for i, u := range urls {
		if port(u) == port(raw) {
			return i + 1
		}
	}
	return 0
}

// TestAMQPClusterLeaderNodeKill runs 4 publishers and a 4-handler group
// on quorum queues (4 shards) of a 3-node RabbitMQ cluster, both sides
// given the three nodes' URLs (amqp.WithAddresses), and SIGKILLs the node
// hosting the queues' leader, which the publisher and the subscriber are
// connected to, mid-stream: both reconnect to another node, the queues
// elect a leader on the nodes left, consuming resumes, and every message
// whose Publish returned nil is consumed (lost = 0; duplicates counted).
// The killed node is started again at the end and rejoins.
func TestAMQPClusterLeaderNodeKill(t *testing.T) {
	needFaults(t)
	urls := testenv.NeedRabbitCluster(t)
	c := newRabbitClusterClients(t, urls, name("rel_rcluster"))
	pub, sub, pubLog, subLog, topic, queues := c.pub, c.sub, c.pubLog, c.subLog, c.topic, c.queues

	l := newLedger()
	// resumedAt is when the first handler call began on a subscriber
	// connection opened after the kill (killedAt, unix ns; 0 before).
	var resumedAt atomic.Pointer[time.Time]
	var killedAtNs atomic.Int64
	h := func(ctx context.Context, m *message.Message) error {
		if k := killedAtNs.Load(); k != 0 && resumedAt.Load() == nil {
			if _, at := subLog.connected(); at.UnixNano() > k {
				now := time.Now()
				resumedAt.CompareAndSwap(nil, &now)
			}
		}
		return l.handle(ctx, m)
	}
	sb := subscribe(context.Background(), sub, topic, h)
	stop := publishLoop(pub, topic, "rc", 4, 10*time.Second, l, func(i int) string { return fmt.Sprint(i % 64) })
	defer stop()
	l.waitAckedAtLeast(t, 300, 60*time.Second)

	// Every shard's leader is on the node the declaring publisher was
	// connected to (RabbitMQ places a new quorum queue's leader on the
	// client's node); kill that node, which the subscriber uses too.
	subURL, _ := subLog.connected()
	pubURL, _ := pubLog.connected()
	leader := 0
	for _, q := range queues {
		n, err := testenv.RabbitQueueLeader(q)
		if err != nil {
			t.Fatal(err)
		}
		if leader != 0 && n != leader {
			t.Fatalf("the shard queues' leaders are on different nodes (%s on node %d, another on node %d); the test needs them on one", q, n, leader)
		}
		leader = n
	}
	if nodeOf(urls, subURL) != leader || nodeOf(urls, pubURL) != leader {
		t.Fatalf("leader on node %d, but the subscriber is on %s and the publisher on %s: the kill would not test their reconnection", leader, subURL, pubURL)
	}
	before := l.ackedCount()
	killedAt := time.Now()
	killedAtNs.Store(killedAt.UnixNano())
	testenv.KillRabbitNode(t, leader)
	killTook := time.Since(killedAt)

	newSubURL, subBack := subLog.waitReconnected(t, killedAt, urls[leader-1], 60*time.Second)
	newPubURL, pubBack := pubLog.waitReconnected(t, killedAt, urls[leader-1], 60*time.Second)
	// Publishing and consuming go on through the nodes left.
	want := l.ackedCount() + 300
	l.waitUntil(60*time.Second, func() bool { return l.ackedCount() >= want })
	if got := l.ackedCount(); got < want {
		t.Fatalf("publishing did not resume: %d messages acknowledged 60s after the reconnection, want %d; publish errors: %v; publisher's state changes: %+v",
			got, want, l.errSamples(), pubLog.all())
	}
	l.waitUntil(60*time.Second, func() bool { return resumedAt.Load() != nil })
	resumed := resumedAt.Load()
	if resumed == nil {
		t.Fatal("no handler call within 60s of the subscriber's reconnection")
	}
	newLeader := 0
	for _, q := range queues[:1] {
		var err error
		if newLeader, err = testenv.RabbitQueueLeader(q); err != nil {
			t.Fatal(err)
		}
		if newLeader == leader {
			t.Errorf("queue %s: leader still on the killed node %d", q, leader)
		}
	}
	stop()
	lost := l.waitAcked(60 * time.Second)
	sb.running(t)
	sb.stop(t)

	restartedAt := time.Now()
	testenv.StartRabbitNode(t, leader)
	restartTook := time.Since(restartedAt)

	r := l.result()
	r.Fault, r.Adapter = "leader node SIGKILL, quorum queues", "amqp (3-node RabbitMQ cluster)"
	r.Injection = fmt.Sprintf("SIGKILL of node %d (hosting the 4 shard queues' leaders and both clients' connections) while 4 publishers and a 4-handler group run with amqp.WithAddresses(3 nodes)", leader)
	r.Extra = fmt.Sprintf("acked_before_kill=%d subscriber_reconnected_after=%v (to %s) publisher_reconnected_after=%v (to %s) consuming_resumed_after=%v new_leader=node%d kill_took=%v restart_took=%v",
		before, subBack.Sub(killedAt).Round(10*time.Millisecond), hostOnly(newSubURL), pubBack.Sub(killedAt).Round(10*time.Millisecond), hostOnly(newPubURL),
		resumed.Sub(killedAt).Round(10*time.Millisecond), newLeader, killTook.Round(10*time.Millisecond), restartTook.Round(100*time.Millisecond))
	if errs := l.errSamples(); len(errs) > 0 {
		t.Logf("publish errors (up to 20 distinct texts): %v", errs)
	}
	report(t, r, lost)
}

// hostOnly returns host:port of a broker URL.
func hostOnly(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}

// rabbitClusterClients are a publisher and a 4-handler group subscriber on
// quorum queues (4 shards) of the 3-node cluster, both given the three
// nodes' URLs (amqp.WithAddresses, the first one tried first), with their
// connection changes logged; the topology is deleted when the test ends.
type rabbitClusterClients struct {
	pub            *amqp.Publisher
	sub            *amqp.Subscriber
	pubLog, subLog *connLog
	topic          string
	queues         []string // the shard queues
}

func newRabbitClusterClients(t *testing.T, urls []string, topic string) *rabbitClusterClients {
	t.Helper()
	group := topic + "_g"
	const shards = 4
	base := topic + "." + group
	queues := make([]string, shards)
	for i := range queues {
		queues[i] = fmt.Sprintf("%s.%d", base, i)
	}
	t.Cleanup(func() { deleteOn(urls, []string{topic, base, base + ".unsharded", base + ".members"}, queues) })

	topo := amqp.WithOptions(amqp.WithQuorumQueues(), amqp.WithShards(shards))
	nodes := amqp.WithAddresses(urls[1:]...)
	fast := amqp.WithReconnectBackoff(50*time.Millisecond, time.Second)
	c := &rabbitClusterClients{pubLog: newConnLog(), subLog: newConnLog(), topic: topic, queues: queues}
	var err error
	c.pub, err = amqp.NewPublisher(urls[0], nodes, fast, topo, amqp.WithDeclareGroups(group), amqp.WithOnStateChange(c.pubLog.record))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.pub.Close() })
	c.sub, err = amqp.NewSubscriber(urls[0], nodes, fast, topo, amqp.WithGroup(group), amqp.WithConcurrency(4),
		amqp.WithOnStateChange(c.subLog.record))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.sub.Close() })
	if err := c.sub.Declare(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAMQPClusterRollingRestart stops (gracefully) and starts each node of
// the 3-node cluster in turn while 4 publishers and a 4-handler group run
// on quorum queues: every restart moves the clients connected to that node
// to another one and the leaders it hosts to another node, and the
// restarts of nodes hosting followers only go by; publishing goes on
// while each node is down, and every message whose Publish returned nil is
// consumed (lost = 0; duplicates counted).
func TestAMQPClusterRollingRestart(t *testing.T) {
	needFaults(t)
	urls := testenv.NeedRabbitCluster(t)
	c := newRabbitClusterClients(t, urls, name("rel_rroll"))
	l := newLedger()
	sb := subscribe(context.Background(), c.sub, c.topic, l.handle)
	stop := publishLoop(c.pub, c.topic, "rr", 4, 10*time.Second, l, func(i int) string { return fmt.Sprint(i % 64) })
	defer stop()
	l.waitAckedAtLeast(t, 300, 60*time.Second)

	began := time.Now()
	var steps []string
	for n := 1; n <= 3; n++ {
		leaders := 0
		for _, q := range c.queues {
			if ln, err := testenv.RabbitQueueLeader(q); err == nil && ln == n {
				leaders++
			}
		}
		at := time.Now()
		testenv.StopRabbitNode(t, n)
		// Publishing goes on while the node is down.
		l.waitAckedAtLeast(t, l.ackedCount()+100, 60*time.Second)
		down := time.Since(at)
		testenv.StartRabbitNode(t, n)
		l.waitAckedAtLeast(t, l.ackedCount()+100, 60*time.Second)
		steps = append(steps, fmt.Sprintf("node%d(leaders=%d,100_acked_while_down_in=%v)", n, leaders, down.Round(100*time.Millisecond)))
	}
	took := time.Since(began)
	stop()
	lost := l.waitAcked(60 * time.Second)
	sb.running(t)
	sb.stop(t)

	r := l.result()
	r.Fault, r.Adapter = "rolling restart, quorum queues", "amqp (3-node RabbitMQ cluster)"
	r.Injection = "rabbitmq-cluster.sh stop N then start N for nodes 1, 2, 3 in turn while 4 publishers and a 4-handler group run with amqp.WithAddresses(3 nodes)"
	r.Extra = fmt.Sprintf("restarts_took=%v %s subscriber_connections=%d publisher_connections=%d",
		took.Round(100*time.Millisecond), strings.Join(steps, " "), c.subLog.count(), c.pubLog.count())
	if errs := l.errSamples(); len(errs) > 0 {
		t.Logf("publish errors (up to 20 distinct texts): %v", errs)
	}
	report(t, r, lost)
}
