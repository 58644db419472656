package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// Share-group mode (WithShareGroup). The state of one polled record, owned
// by its lane's poll loop (shareLane.process):
//
//	state     what happens                                  next
//	queued    waits for a worker slot; its lock is renewed   running; released on shutdown
//	running   the handler runs (one of WithConcurrency        nil: accepted; permanent: rejected;
//	          slots); lock renewed                            other error: waiting
//	waiting   the redelivery backoff, or the error's          released (after the wait, or
//	          RedeliverAfter, runs (no slot held); lock       at once on shutdown)
//	          renewed
//	done      a terminal ack (accept, release, reject) is     -
//	          set on the record
//
// A lane polls again only when every record of its last poll is done:
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

// maxShareLanes bounds the share sessions (franz-go clients, each a
// member of the group) of one Subscribe call.
const maxShareLanes = 4

// shareSub is one Subscribe call in share-group mode: min(max(
// WithConcurrency, 2), maxShareLanes) lanes, each a franz-go client that
// polls on its own, sharing WithConcurrency workers. A lane polls only when it holds nothing, so
// with one lane a poll that returned fewer records than there are workers
// would leave the others idle until the poll's records are done; the
// other lanes poll meanwhile.
type shareSub struct {
	topic string
	group string
	cfg   *config
	h     message.Handler

	slots chan struct{} // one per running handler, WithConcurrency in all

	hctx    context.Context // the handlers' context: cancelled only after the drain timeout
	hcancel context.CancelFunc

	backoff dispatch.Backoff
	perPoll int // records a lane acquires in one poll

	mu    sync.Mutex
	fatal error
}

// shareLane is one client of a shareSub and its poll loop.
type shareLane struct {
	ss      *shareSub
	cl      *kgo.Client
	results chan shareResult
	lockEst time.Duration // the longest acquisition lock seen, a lower bound of the group's lock duration
	idle    time.Duration // the client's ConnIdleTimeout: a held session needs traffic more often

	flushing atomic.Bool    // a flush of renewals is under way
	flushes  sync.WaitGroup // the flush goroutines, waited for before Close
}

// runShare is Subscribe in share-group mode.
func (s *Subscriber) runShare(ctx context.Context, topic string, h message.Handler) error {
	group := s.cfg.Group
	if err := checkShareSupport(ctx, s.admin, group); err != nil {
		return err
	}
	if err := checkGroupKind(ctx, s.admin, group, true); err != nil {
		return err
	}
	reset := "earliest"
	if s.cfg.start == StartLatest {
		reset = "latest"
	}
	if err := setShareGroupConfig(ctx, s.admin, group, map[string]string{"share.auto.offset.reset": reset}); err != nil {
		return err
	}

	// At least two lanes, so that one polls (a round trip of several
	// milliseconds on Kafka 4.4) while the other's records are handled.
	n := min(max(s.cfg.Concurrency, 2), maxShareLanes)
	ss := &shareSub{
		topic:   topic,
		group:   group,
		cfg:     &s.cfg,
		h:       h,
		slots:   make(chan struct{}, s.cfg.Concurrency),
		backoff: dispatch.Backoff{Initial: s.cfg.InitialBackoff, Max: s.cfg.MaxBackoff, Multiplier: 2},
		perPoll: (s.cfg.shareMaxRecords() + n - 1) / n,
	}
	base := "ferry-share-" + message.NewID()
	lanes := make([]*shareLane, n)
	ids := make(map[string]bool, n)
	for i := range lanes {
		ln, id, err := ss.newLane(s.brokers, base+"-"+strconv.Itoa(i))
		if err != nil {
			for _, ln := range lanes[:i] {
				ln.cl.Close()
			}
			return fmt.Errorf("kafka: subscribe %q: %w: %w", topic, message.ErrInvalidConfig, err)
		}
		lanes[i], ids[id] = ln, true
	}

	ss.hctx, ss.hcancel = context.WithCancel(context.WithoutCancel(ctx))
	defer ss.hcancel()
	// A fatal error of one lane stops them all.
	lctx, stopLanes := context.WithCancel(ctx)
	defer stopLanes()
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		ss.signalReady(lctx, kadm.NewClient(s.admin), ids)
	}()
	var wg sync.WaitGroup
	for _, ln := range lanes {
		wg.Go(func() {
			if ln.loop(lctx) {
				stopLanes()
			}
			// Every record of the lane is done: send the acks, then
			// leave the group (Close releases anything franz-go still
			// holds).
			ln.flushes.Wait()
			fctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			_ = ln.cl.FlushAcks(fctx) // best effort: an ack that is not sent becomes a redelivery
			cancel()
			ln.cl.Close()
		})
	}
	wg.Wait()
	stopLanes()
	<-readyDone
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.fatal
}

// newLane creates a lane's client, with clientID unless WithClientOptions
// sets one, and returns the lane and its client ID.
func (ss *shareSub) newLane(brokers []string, clientID string) (*shareLane, string, error) {
	kopts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(clientID),
		kgo.ShareGroup(ss.group),
		kgo.ConsumeTopics(ss.topic),
		// At most perPoll records per poll, and no fetch while records
		// are held (ShareMaxRecordsStrict makes franz-go fetch only
		// during PollRecords): records are acquired only when the lane
		// is about to hand them out, so no acquisition lock runs out in a
		// buffer where ferry cannot renew it.
		kgo.ShareMaxRecords(int32(ss.perPoll)),
		kgo.ShareMaxRecordsStrict(),
	}
	if o := ss.cfg.obs; o != nil {
		// A failed acknowledgement is the share group's failed commit:
		// the broker delivers the records again once their lock expires.
		kopts = append(kopts, kgo.ShareAckCallback(func(_ *kgo.Client, rs kgo.ShareAckResults) {
			for _, r := range rs {
				if r.Err != nil {
					o.Observe(context.Background(), message.Event{Kind: message.EventCommitFailed, System: System,
						Topic: r.Topic, Group: ss.group, Partition: r.Partition, Err: r.Err})
				}
			}
		}))
	}
	cl, err := kgo.NewClient(append(kopts, ss.cfg.clientOpts...)...)
	if err != nil {
		return nil, "", err
	}
	ln := &shareLane{ss: ss, cl: cl, results: make(chan shareResult, ss.cfg.Concurrency)}
	ln.idle, _ = cl.OptValue(kgo.ConnIdleTimeout).(time.Duration)
	if id, ok := cl.OptValue(kgo.ClientID).(string); ok {
		clientID = id // WithClientOptions(kgo.ClientID(...)) overrides ours
	}
	return ln, clientID, nil
}

// signalReady calls message.SignalReady once a lane of this Subscribe
// call shows in the share group with an assignment of the topic
// (DescribeShareGroups, asked every 50ms), or not at all if ctx ends
// first.
func (ss *shareSub) signalReady(ctx context.Context, adm *kadm.Client, clientIDs map[string]bool) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		gs, err := adm.DescribeShareGroups(ctx, ss.group)
		if err == nil {
			for _, m := range gs[ss.group].Members {
				if clientIDs[m.ClientID] && len(m.Assignment[ss.topic]) > 0 {
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

// loop polls and processes records until ctx ends or a fatal error; it
// reports whether it stopped for a fatal error.
func (ln *shareLane) loop(ctx context.Context) bool {
	ss := ln.ss
	for ctx.Err() == nil {
		// Nothing is held here (process returned with every record
		// done), so the auto-accept of this poll finds nothing to accept.
		fetches := ln.cl.PollRecords(ctx, ss.perPoll)
		if fetches.IsClientClosed() {
			return false
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
			recs = append(recs, ln.newRec(r, now))
		})
		if fatal != nil || ctx.Err() != nil {
			for _, rec := range recs {
				rec.r.Ack(kgo.AckRelease)
			}
			if fatal != nil {
				ss.mu.Lock()
				if ss.fatal == nil {
					ss.fatal = fatal
				}
				ss.mu.Unlock()
				return true
			}
			return false
		}
		if len(recs) > 0 {
			ln.process(ctx, recs)
		}
	}
	return false
}

// newRec builds the delivered message of a polled record.
func (ln *shareLane) newRec(r *kgo.Record, now time.Time) *shareRec {
	ss := ln.ss
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
		System:      System,
		Topic:       r.Topic,
		Group:       ss.cfg.Group,
		Partition:   r.Partition,
		Offset:      r.Offset,
		Attempt:     max(n, 1),
		Redelivered: n > 1,
	}
	// The first renewal halfway through what is left of the lock.
	left := r.AcquisitionDeadline().Sub(now)
	ln.lockEst = max(ln.lockEst, left)
	rec.nextRenew = now.Add(ln.renewEvery(left))
	return rec
}

// flushRenewals sends the renewals at once: franz-go holds
// acknowledgements for up to a second before it sends them on their own
// (no fetch runs while records are held), which a short lock may not
// survive. One flush at a time, in the background, bounded by the lock.
func (ln *shareLane) flushRenewals() {
	if !ln.flushing.CompareAndSwap(false, true) {
		return
	}
	bound := max(ln.lockEst, time.Second) // read here: the lane goroutine owns lockEst
	ln.flushes.Add(1)
	go func() {
		defer ln.flushes.Done()
		defer ln.flushing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		_ = ln.cl.FlushAcks(ctx) // a renewal that is not sent lets the lock expire: a redelivery
	}()
}

// renewEvery is the wait before renewing a lock with left to run: half of
// it, and at most half of the connection idle timeout (franz-go closes an
// idle connection, and the broker releases a closed session's records).
func (ln *shareLane) renewEvery(left time.Duration) time.Duration {
	d := left / 2
	if ln.idle > 0 {
		d = min(d, ln.idle/2)
	}
	return max(d, 10*time.Millisecond)
}

// process runs one poll's records through the shared workers and returns
// when every one of them is done (has a terminal ack). See the state
// table above.
func (ln *shareLane) process(ctx context.Context, recs []*shareRec) {
	ss := ln.ss
	var (
		queue    = recs
		open     = len(recs)
		stopping = false
		wake     = make(chan *shareRec, len(recs)) // backoff timers; never blocks
		drain    <-chan time.Time
		drainT   *time.Timer
		ctxDone  = ctx.Done()
	)
	tick := time.NewTicker(max(ln.renewEvery(ln.lockEst)/4, 5*time.Millisecond))
	defer tick.Stop()
	defer func() {
		if drainT != nil {
			drainT.Stop()
		}
	}()
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
	for open > 0 {
		// A worker slot is asked for only while a record is queued.
		var slot chan<- struct{}
		if !stopping && len(queue) > 0 {
			slot = ss.slots
		}
		select {
		case slot <- struct{}{}:
			rec := queue[0]
			queue = queue[1:]
			rec.state = shareRunning
			go func() {
				err := adapter.Call(ss.hctx, ss.h, &rec.msg)
				ln.results <- shareResult{rec, err} // never blocks: at most Concurrency run
			}()
		case res := <-ln.results:
			<-ss.slots
			rec := res.rec
			ss.observe(rec, res.err)
			switch {
			case res.err == nil:
				finish(rec, kgo.AckAccept)
			case permanent(res.err):
				ss.logReject(rec, res.err)
				finish(rec, kgo.AckReject)
			case stopping:
				finish(rec, kgo.AckRelease)
			default:
				rec.state = shareWaiting
				d, ok := message.RedeliveryDelay(res.err) // the retry middleware's wait
				if !ok {
					d = ss.backoff.Delay(rec.msg.Delivery.Attempt)
				}
				rec.timer = time.AfterFunc(d, func() { wake <- rec })
			}
		case rec := <-wake:
			if rec.state == shareWaiting {
				finish(rec, kgo.AckRelease)
			}
		case now := <-tick.C:
			renewed := false
			for _, rec := range recs {
				if rec.state != shareDone && !now.Before(rec.nextRenew) {
					rec.r.Ack(kgo.AckRenew) // a no-op while the previous renewal is in flight
					rec.nextRenew = now.Add(ln.renewEvery(ln.lockEst))
					renewed = true
				}
			}
			if renewed {
				ln.flushRenewals()
			}
		case <-ctxDone:
			stop()
		case <-drain:
			drain = nil
			ss.hcancel() // the running handlers' context; they are still waited for
		}
	}
}

// observe reports a handler's outcome (WithObserver, WithLogger):
// EventHandled or EventHandlerError.
func (ss *shareSub) observe(rec *shareRec, err error) {
	o := ss.cfg.obs
	if o == nil {
		return
	}
	ev := message.MessageEvent(message.EventHandled, &rec.msg)
	if err != nil {
		ev.Kind, ev.Err = message.EventHandlerError, err
	}
	ev.Partition = rec.msg.Delivery.Partition
	o.Observe(context.Background(), ev)
}

// logReject logs a rejected record at Warn (WithLogger): the broker
// archives it (or moves it to the group's dead-letter topic) and never
// delivers it again.
func (ss *shareSub) logReject(rec *shareRec, err error) {
	if l := ss.cfg.logger; l != nil {
		m := &rec.msg
		l.Warn("ferry kafka: permanent handler error; rejecting the record (the broker archives it)", "topic", m.Delivery.Topic, "group", m.Delivery.Group,
			"partition", m.Delivery.Partition, "offset", m.Delivery.Offset, "id", m.ID, "attempt", m.Delivery.Attempt, "err", err)
	}
}
