// Command competing-consumers shows two members of one consumer group
// splitting a stream of jobs: each job goes to one member only, like two
// instances of a Spring @KafkaListener with the same groupId, or two
// RabbitMQ members sharing a group's shard queues (one member per shard).
//
//	go run ./examples/competing-consumers [-broker kafka://127.0.0.1:9092 | amqp://guest:guest@127.0.0.1:5672/]
//
// Two subscribers join the group "thumbnail-workers" on the jobs topic. The
// producer publishes jobs at a steady pace (keyed by image, so Kafka and
// inmem spread them over partitions) until at least 200 are out and both
// members have had work; a member that joins later than the first gets
// its share when the group rebalances. Each handler records which member
// handled which job. The last line shows the split and checks it:
//
//	result: published=200 member-1=104 member-2=96 total=200 overlap=0
//
// (the split varies from run to run; total always equals published, and no
// job is handled by both members).
//
// With -share on Kafka the members join a Kafka share group (KIP-932,
// kafka.WithShareGroup) instead of a consumer group, on a topic with a
// single partition: a consumer group would leave the second member idle
// ("consumers <= partitions"), a share group hands the partition's
// records to both, each acknowledged on its own, like the RabbitMQ queue
// that competing consumers share. There is no per-key order then. The
// share group is "thumbnailer": a Kafka group ID is a consumer group or a
// share group, never both, so the two modes need two names.
//
//	go run ./examples/competing-consumers -broker kafka://127.0.0.1:9092 -share
//	mode: share group thumbnailer, topic with 1 partition
//	result: published=200 member-1=101 member-2=99 total=200 overlap=0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/connect"
	"github.com/ferrymsg/ferry/examples/internal/broker"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/runner"
)

var share = flag.Bool("share", false, "Kafka only: the members join a share group (KIP-932) on a one-partition topic instead of a consumer group")

const (
	minJobs = 200
	maxJobs = 5000 // give up if a member never gets any work
	pace    = 5 * time.Millisecond
)

func main() { broker.Main("competing-consumers", run) }

// tally records who handled what.
type tally struct {
	mu        sync.Mutex
	handledBy map[string][]int // job ID -> members that handled it
	perMember [3]int           // index 1 and 2
	changed   chan struct{}
}

func (t *tally) record(member int, id string) {
	t.mu.Lock()
	t.handledBy[id] = append(t.handledBy[id], member)
	t.perMember[member]++
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tally) bothBusy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.perMember[1] > 0 && t.perMember[2] > 0
}

func (t *tally) distinct() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.handledBy)
}

func run(ctx context.Context, brokerURL string) error {
	b, err := broker.Open(ctx, brokerURL)
	if err != nil {
		return err
	}
	defer b.Close()
	topic := b.Topic("thumbnail-jobs")
	group := "thumbnail-workers"
	var mode []connect.SubscriberOption
	if *share {
		group = "thumbnailer"
		if b.Kind != "kafka" {
			return errors.New("-share needs a kafka:// broker (share groups are Kafka's)")
		}
		// One partition, created by the first Subscribe: in a consumer
		// group only one member could consume it.
		mode = append(mode, connect.WithKafkaSubscriber(kafka.WithShareGroup("thumbnailer"), kafka.WithTopicCreation(1, -1)))
	}
	fmt.Printf("competing-consumers: %s broker, topic %s, group %s with 2 members\n", b.Kind, topic, group)
	if *share {
		fmt.Println("mode: share group thumbnailer, topic with 1 partition")
	}
	if err := b.Prepare(ctx, topic, group); err != nil {
		return err
	}

	t := &tally{handledBy: map[string][]int{}, changed: make(chan struct{}, 1)}
	svc, err := runner.New(runner.WithSignals()) // broker.Main turns signals into ctx
	if err != nil {
		return err
	}
	for member := 1; member <= 2; member++ {
		// Same group: the members share the work.
		sub, err := b.SubscriberWith(group, 1, mode...)
		if err != nil {
			return err
		}
		if err := svc.Add(fmt.Sprintf("member-%d", member), sub, topic, func(ctx context.Context, msg *message.Message) error {
			time.Sleep(2 * time.Millisecond) // render the thumbnail
			t.record(member, msg.ID)
			return nil
		}); err != nil {
			return err
		}
	}

	// The producer, once both members consume (and, -share, the topic
	// exists with its one partition): a steady stream of jobs until enough
	// are out and both members have had work; then it waits until every
	// job was handled and stops the service.
	published := 0
	if err := svc.Go("producer", func(ctx context.Context) error {
		for published < minJobs || !t.bothBusy() {
			if published == maxJobs {
				return fmt.Errorf("published %d jobs and a member still had none: member-1=%d member-2=%d", published, t.perMember[1], t.perMember[2])
			}
			published++
			msg := &message.Message{ID: fmt.Sprintf("job-%04d", published), Key: fmt.Sprintf("image-%d", published)}
			if err := b.Publisher().Publish(ctx, topic, msg); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pace):
			}
		}
		for t.distinct() < published {
			select {
			case <-t.changed:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		svc.Stop()
		return nil
	}); err != nil {
		return err
	}
	if err := svc.Run(ctx); err != nil || ctx.Err() != nil {
		return errors.Join(err, context.Cause(ctx)) // a failure, or the timeout or Ctrl-C
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	overlap := 0
	for _, members := range t.handledBy {
		if len(members) > 1 {
			overlap++
		}
	}
	total := t.perMember[1] + t.perMember[2]
	fmt.Printf("result: published=%d member-1=%d member-2=%d total=%d overlap=%d\n",
		published, t.perMember[1], t.perMember[2], total, overlap)
	if total != published || overlap != 0 {
		return fmt.Errorf("%d jobs published but %d handled, %d by both members", published, total, overlap)
	}
	return nil
}
