package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// Share-group mode (WithShareGroup). The state of one polled record, owned
// by the poll loop (shareSub.process):
//
//	state     what happens                                  next
//	queued    waits for a worker; its lock is renewed        running; released on shutdown
//	running   a worker runs the handler; lock renewed         nil: accepted; permanent: rejected;
//	                                                          other error: waiting
//	waiting   the redelivery backoff runs (no worker held);   released (after the backoff, or
//	          lock renewed                                    at once on shutdown)
//	done      a terminal ack (accept, release, reject) is     -
//	          set on the record
//
// The loop polls again only when every record of the last poll is done:
// franz-go auto-accepts, at the next PollRecords, every record of the
// previous poll without a terminal ack (renewed ones included), so a poll
// while one record is still queued, running or waiting would settle it as
// handled. Polling only with nothing held makes that impossible.
const (
	shareQueued = iota
	shareRunning
	shareWaiting
	shareDone
)

type shareRec struct {
	r         *kgo.Record
	msg       message.Message
	state     int
	nextRenew time.Time
	timer     *time.Timer
}

type shareResult struct {
	rec *shareRec
	err error
}

// shareSub is one Subscribe call in share-group mode.
type shareSub struct {
	topic string
	cfg   *config
	cl    *kgo.Client
	h     message.Handler

	jobs    chan *shareRec
	results chan shareResult

	hctx    context.Context // the handlers' context: cancelled only after the drain timeout
	hcancel context.CancelFunc

	backoff dispatch.Backoff
	lockEst time.Duration // the longest acquisition lock seen, a lower bound of the group's lock duration
	idle    time.Duration // the client's ConnIdleTimeout: a held session needs traffic more often
	fatal   error
}

// runShare is Subscribe in share-group mode.
func (s *Subscriber) runShare(ctx context.Context, topic string, h message.Handler) error {
	group := s.cfg.Group
	if err := checkShareSupport(ctx, s.admin, group); err != nil {
		return err
	}
	reset := "earliest"
	if s.cfg.start == StartLatest {
		reset = "latest"
	}
	if err := setShareGroupConfig(ctx, s.admin, group, map[string]string{"share.auto.offset.reset": reset}); err != nil {
		return err
	}

	ss := &shareSub{
		topic:   topic,
		cfg:     &s.cfg,
		h:       h,
		jobs:    make(chan *shareRec, s.cfg.Concurrency),
		results: make(chan shareResult, s.cfg.Concurrency),
		backoff: dispatch.Backoff{Initial: s.cfg.InitialBackoff, Max: s.cfg.MaxBackoff, Multiplier: 2},
	}
	clientID := "ferry-share-" + message.NewID()
	kopts := []kgo.Opt{
		kgo.SeedBrokers(s.brokers...),
		kgo.ClientID(clientID),
		kgo.ShareGroup(group),
		kgo.ConsumeTopics(topic),
		// At most shareMaxRecords records per poll, and no fetch while
		// records are held (ShareMaxRecordsStrict makes franz-go fetch
		// only during PollRecords): a record is acquired only when a
		// worker is about to get it, so no acquisition lock runs out in a
		// buffer where ferry cannot renew it.
		kgo.ShareMaxRecords(int32(s.cfg.shareMaxRecords())),
		kgo.ShareMaxRecordsStrict(),
	}
	if l := s.cfg.logger; l != nil {
		kopts = append(kopts, kgo.ShareAckCallback(func(_ *kgo.Client, rs kgo.ShareAckResults) {
			for _, r := range rs {
				if r.Err != nil {
					l.Warn("ferry kafka: share acknowledgement failed; the broker redelivers the records once their lock expires",
						"topic", r.Topic, "group", group, "partition", r.Partition, "err", r.Err)
				}
			}
		}))
	}
	cl, err := kgo.NewClient(append(kopts, s.cfg.clientOpts...)...)
	if err != nil {
		return fmt.Errorf("kafka: subscribe %q: %w: %w", topic, message.ErrInvalidConfig, err)
	}
	ss.cl = cl
	ss.idle, _ = cl.OptValue(kgo.ConnIdleTimeout).(time.Duration)
	if id, ok := cl.OptValue(kgo.ClientID).(string); ok {
		clientID = id // WithClientOptions(kgo.ClientID(...)) overrides ours
	}

	ss.hctx, ss.hcancel = context.WithCancel(context.WithoutCancel(ctx))
	defer ss.hcancel()
	done := make(chan struct{})
	for range s.cfg.Concurrency {
		go ss.work(done)
	}
	readyDone := make(chan struct{})
	readyCtx, readyStop := context.WithCancel(ctx)
	go func() {
		defer close(readyDone)
		ss.signalReady(readyCtx, kadm.NewClient(s.admin), group, clientID)
	}()

	ss.loop(ctx)

	readyStop()
	<-readyDone
	close(ss.jobs)
	for range s.cfg.Concurrency {
		<-done
	}
	// Every record is done: send the acks, then leave the group
	// (Close releases anything franz-go still holds).
	fctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	_ = cl.FlushAcks(fctx) // best effort: an ack that is not sent becomes a redelivery
	cancel()
	cl.Close()
	return ss.fatal
}

// signalReady calls message.SignalReady once this member shows in the
// share group with an assignment of the topic (DescribeShareGroups,
// checked every 50ms), or not at all if ctx ends first.
func (ss *shareSub) signalReady(ctx context.Context, adm *kadm.Client, group, clientID string) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		gs, err := adm.DescribeShareGroups(ctx, group)
		if err == nil {
			for _, m := range gs[group].Members {
				if m.ClientID == clientID && len(m.Assignment[ss.topic]) > 0 {
					message.SignalReady(ctx)
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// work runs handlers for the poll loop until jobs is closed.
func (ss *shareSub) work(done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	for rec := range ss.jobs {
		err := adapter.Call(ss.hctx, ss.h, &rec.msg)
		ss.results <- shareResult{rec, err}
	}
}

// loop polls and processes records until ctx ends or a fatal error.
func (ss *shareSub) loop(ctx context.Context) {
	n := ss.cfg.shareMaxRecords()
	for ctx.Err() == nil {
		// Nothing is held here (process returned with every record
		// done), so the auto-accept of this poll finds nothing to accept.
		fetches := ss.cl.PollRecords(ctx, n)
		if fetches.IsClientClosed() {
			return
		}
		var fatal error
		fetches.EachError(func(t string, p int32, err error) {
			if isFatalFetchErr(err) && fatal == nil {
				fatal = fmt.Errorf("kafka: consume %q partition %d: %w", t, p, err)
			}
		})
		var recs []*shareRec
		now := time.Now()
		fetches.EachRecord(func(r *kgo.Record) {
			recs = append(recs, ss.newRec(r, now))
		})
		if fatal != nil || ctx.Err() != nil {
			for _, rec := range recs {
				rec.r.Ack(kgo.AckRelease)
			}
			ss.fatal = fatal
			return
		}
		if len(recs) > 0 {
			ss.process(ctx, recs)
		}
	}
}

// newRec builds the delivered message of a polled record.
func (ss *shareSub) newRec(r *kgo.Record, now time.Time) *shareRec {
	rec := &shareRec{r: r}
	m := &rec.msg
	m.Key = string(r.Key)
	m.Payload = r.Value
	m.Time = r.Timestamp
	for _, h := range r.Headers {
		if h.Key == HeaderID {
			m.ID = string(h.Value)
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(r.Headers))
		}
		m.Headers[h.Key] = string(h.Value)
	}
	if m.ID == "" {
		m.ID = r.Topic + "-" + strconv.FormatInt(int64(r.Partition), 10) + "-" + strconv.FormatInt(r.Offset, 10)
	}
	n := int(r.DeliveryCount())
	m.Delivery = message.Delivery{
		Topic:       r.Topic,
		Group:       ss.cfg.Group,
		Partition:   r.Partition,
		Offset:      r.Offset,
		Attempt:     max(n, 1),
		Redelivered: n > 1,
	}
	// The first renewal halfway through what is left of the lock.
	left := r.AcquisitionDeadline().Sub(now)
	ss.lockEst = max(ss.lockEst, left)
	rec.nextRenew = now.Add(ss.renewEvery(left))
	return rec
}

// renewEvery is the wait before renewing a lock with left to run: half of
// it, and at most half of the connection idle timeout (franz-go closes an
// idle connection, and the broker releases a closed session's records).
func (ss *shareSub) renewEvery(left time.Duration) time.Duration {
	d := left / 2
	if ss.idle > 0 {
		d = min(d, ss.idle/2)
	}
	return max(d, 10*time.Millisecond)
}

// process runs one poll's records through the workers and returns when
// every one of them is done (has a terminal ack). See the state table
// above.
func (ss *shareSub) process(ctx context.Context, recs []*shareRec) {
	var (
		queue    = recs
		open     = len(recs)
		running  = 0
		stopping = false
		wake     = make(chan *shareRec, len(recs)) // backoff timers; never blocks
		drain    <-chan time.Time
		drainT   *time.Timer
		ctxDone  = ctx.Done()
	)
	tick := time.NewTicker(max(ss.renewEvery(ss.lockEst)/4, 5*time.Millisecond))
	defer tick.Stop()
	finish := func(rec *shareRec, st kgo.AckStatus) {
		rec.r.Ack(st)
		rec.state = shareDone
		open--
	}
	stop := func() {
		stopping = true
		ctxDone = nil
		for _, rec := range queue {
			finish(rec, kgo.AckRelease)
		}
		queue = nil
		for _, rec := range recs {
			if rec.state == shareWaiting && rec.timer.Stop() {
				finish(rec, kgo.AckRelease)
			}
		}
		drainT = time.NewTimer(ss.cfg.DrainTimeout)
		drain = drainT.C
	}
	defer func() {
		if drainT != nil {
			drainT.Stop()
		}
	}()
	for open > 0 {
		for !stopping && len(queue) > 0 && running < ss.cfg.Concurrency {
			rec := queue[0]
			queue = queue[1:]
			rec.state = shareRunning
			running++
			ss.jobs <- rec // never blocks: at most Concurrency are out
		}
		if open == 0 {
			break
		}
		select {
		case res := <-ss.results:
			running--
			rec := res.rec
			switch {
			case res.err == nil:
				finish(rec, kgo.AckAccept)
			case permanent(res.err):
				ss.logFailure(rec, res.err, "rejecting (permanent error)")
				finish(rec, kgo.AckReject)
			case stopping:
				ss.logFailure(rec, res.err, "releasing")
				finish(rec, kgo.AckRelease)
			default:
				ss.logFailure(rec, res.err, "releasing after the redelivery backoff")
				rec.state = shareWaiting
				d := ss.backoff.Delay(rec.msg.Delivery.Attempt)
				rec.timer = time.AfterFunc(d, func() { wake <- rec })
			}
		case rec := <-wake:
			if rec.state == shareWaiting {
				finish(rec, kgo.AckRelease)
			}
		case now := <-tick.C:
			for _, rec := range recs {
				if rec.state != shareDone && !now.Before(rec.nextRenew) {
					rec.r.Ack(kgo.AckRenew) // a no-op while the previous renewal is in flight
					rec.nextRenew = now.Add(ss.renewEvery(ss.lockEst))
				}
			}
		case <-ctxDone:
			stop()
		case <-drain:
			drain = nil
			ss.hcancel() // the running handlers' context; they are still waited for
		}
	}
}

// logFailure logs a failed handler at Warn (WithLogger).
func (ss *shareSub) logFailure(rec *shareRec, err error, what string) {
	if l := ss.cfg.logger; l != nil {
		m := &rec.msg
		l.Warn("ferry kafka: handler failed; "+what, "topic", m.Delivery.Topic, "group", m.Delivery.Group,
			"partition", m.Delivery.Partition, "offset", m.Delivery.Offset, "id", m.ID, "attempt", m.Delivery.Attempt, "err", err)
	}
}
