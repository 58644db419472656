package kafka_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// TestCrashResumeTime measures, on the real broker, how long a group takes
// after a member crashed (every connection of its client cut and refused:
// no heartbeat, commit or LeaveGroup reaches the cluster, as after
// SIGKILL) until a restarted member handles records of every partition
// the crashed one held. With the default session timeout
// (kafka.DefaultSessionTimeout, 10 s) that is the session timeout plus a
// rejoin; with static membership (kgo.InstanceID, the restarted member
// reusing the crashed one's ID) the coordinator hands the partitions over
// at the join. FERRY_KAFKA_CRASH_SESSION_TIMEOUT (a Go duration) measures
// another session timeout, e.g. 45s, franz-go's own default.
func TestCrashResumeTime(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	session := time.Duration(0)
	if v := os.Getenv("FERRY_KAFKA_CRASH_SESSION_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		session = d
	}
	for _, tc := range []struct {
		name     string
		instance bool
		bound    time.Duration
	}{
		{"default session timeout", false, kafka.DefaultSessionTimeout + 10*time.Second},
		{"static membership", true, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if session > 0 && !tc.instance {
				tc.bound = session + 10*time.Second
			}
			took := crashResume(t, brokers, tc.instance, session)
			t.Logf("crash to resume: %v (session timeout %v, static membership %v)", took.Round(100*time.Millisecond), cmp(session, kafka.DefaultSessionTimeout), tc.instance)
			if took > tc.bound {
				t.Errorf("crash to resume took %v, want at most %v", took, tc.bound)
			}
		})
	}
}

func cmp(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

func crashResume(t *testing.T, brokers []string, instance bool, session time.Duration) time.Duration {
	topic := fmt.Sprintf("ferry-crash-resume-%d", time.Now().UnixNano())
	group := topic + "-g"
	const partitions = 4
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(partitions, -1), kafka.WithClientOptions(kgo.ProducerLinger(time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	var mu sync.Mutex
	seen := map[string]map[int32]bool{} // member -> partitions handled
	handler := func(name string) message.Handler {
		return func(_ context.Context, m *message.Message) error {
			mu.Lock()
			if seen[name] == nil {
				seen[name] = map[int32]bool{}
			}
			seen[name][m.Delivery.Partition] = true
			mu.Unlock()
			return nil
		}
	}
	count := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen[name])
	}
	opts := func(ks *messagetest.KillSwitch) []kafka.SubscriberOption {
		o := []kafka.SubscriberOption{kafka.WithGroup(group), kafka.WithTopicCreation(partitions, -1),
			kafka.WithCommitInterval(200 * time.Millisecond),
			kafka.WithClientOptions(kgo.FetchMaxWait(200 * time.Millisecond))}
		if ks != nil {
			o = append(o, kafka.WithClientOptions(kgo.Dialer(ks.DialContext)))
		}
		if instance {
			o = append(o, kafka.WithClientOptions(kgo.InstanceID(group+"-member-1")))
		}
		if session > 0 {
			o = append(o, kafka.WithClientOptions(kgo.SessionTimeout(session)))
		}
		return o
	}
	start := func(name string, ks *messagetest.KillSwitch) (*kafka.Subscriber, context.CancelFunc) {
		s, err := kafka.NewSubscriber(brokers, opts(ks)...)
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		ctx, cancel := context.WithCancel(message.WithReady(context.Background(), func() { close(ready) }))
		go func() { _ = s.Subscribe(ctx, topic, handler(name)) }()
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s not ready after 60 s", name)
		}
		return s, cancel
	}
	// One record per partition, keyed so that each partition gets one.
	publishAll := func(round string) {
		for i := range 64 {
			if err := pub.Publish(context.Background(), topic, &message.Message{Key: round + strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitAll := func(name string, d time.Duration) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if count(name) == partitions {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}

	ks := messagetest.NewKillSwitch(nil)
	a, cancelA := start("a", ks)
	publishAll("a")
	if !waitAll("a", 60*time.Second) {
		t.Fatalf("the first member handled records of %d partitions, want %d", count("a"), partitions)
	}
	time.Sleep(500 * time.Millisecond) // a commit or two
	ks.Kill()
	crashed := time.Now()
	// The crashed client cannot reach the cluster any more; stop it in
	// the background, as a dead process would not stop at all.
	go func() { cancelA(); _ = a.Close() }()

	b, cancelB := start("b", nil)
	defer func() { cancelB(); _ = b.Close() }()
	publishAll("b")
	if !waitAll("b", 120*time.Second) {
		t.Fatalf("the restarted member handled records of %d partitions within 120 s, want %d", count("b"), partitions)
	}
	return time.Since(crashed)
}
