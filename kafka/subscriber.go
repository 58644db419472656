package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// commitTimeout bounds the offset commits made on revocation and shutdown.
const commitTimeout = 10 * time.Second

// Subscriber consumes Kafka topics as a member of a consumer group. Each
// Subscribe call runs its own franz-go client and group membership, so one
// Subscriber can consume several topics at once.
type Subscriber struct {
	brokers []string
	cfg     config
	admin   *kgo.Client
	topics  *topics

	life adapter.Lifecycle // the running Subscribe calls; Close cancels them
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a Subscriber for the cluster reachable through the
// given seed brokers. It does not connect until Subscribe.
//
// It takes the Subscriber options (WithGroup or WithShareGroup,
// WithConcurrency, WithMaxPending, WithRedeliveryBackoff, WithDrainTimeout,
// WithStartOffset, WithCommitInterval) and the shared ones
// (WithClientOptions, WithTopicCreation, WithoutTopicCreation,
// WithLogger, WithOptions). A bad option value fails with an error
// wrapping message.ErrInvalidConfig that names the option.
func NewSubscriber(brokers []string, opts ...SubscriberOption) (*Subscriber, error) {
	if err := validateBrokers(brokers); err != nil {
		return nil, err
	}
	c, err := newSubscriberConfig(opts)
	if err != nil {
		return nil, err
	}
	admin, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, c.clientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w: seed brokers or WithClientOptions: %w", message.ErrInvalidConfig, err)
	}
	return &Subscriber{
		brokers: append([]string(nil), brokers...),
		cfg:     c,
		admin:   admin,
		topics:  newTopics(kadm.NewClient(admin), &c),
	}, nil
}

// Group liveness defaults of a Subscriber, applied before
// WithClientOptions (so kgo.SessionTimeout and kgo.HeartbeatInterval
// there win). See the package doc, "Crash recovery".
const (
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = time.Second
)

// Subscribe joins the consumer group for topic and calls h for each record
// until ctx is cancelled (it then shuts down gracefully and returns nil),
// Close is called (it shuts down the same way and returns an error matching
// message.ErrClosed), or a fatal error occurs. See the package doc for the
// delivery semantics.
func (s *Subscriber) Subscribe(ctx context.Context, topic string, h message.Handler) error {
	if h == nil {
		return fmt.Errorf("kafka: subscribe %q: %w", topic, message.ErrNilHandler)
	}
	return s.subscribe(ctx, topic, h, nil)
}

// subscribe is Subscribe, or SubscribeBatch when bat is set (batch.go).
func (s *Subscriber) subscribe(ctx context.Context, topic string, h message.Handler, bat *dispatch.Batch) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	// runCtx ends with ctx or when Close is called.
	runCtx, end, err := s.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("kafka: subscribe %q: %w", topic, err)
	}
	defer end()

	err = s.topics.ensure(runCtx, topic)
	switch {
	case err == nil && s.cfg.share:
		err = s.runShare(runCtx, topic, h) // share.go
	case err == nil:
		if err = checkGroupKind(runCtx, s.admin, s.cfg.Group, false); err == nil {
			err = s.run(runCtx, topic, h, bat)
		}
	}
	if s.life.Closed() {
		return fmt.Errorf("kafka: subscribe %q: %w", topic, message.ErrClosed)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Close stops every running Subscribe call (each drains and commits as on
// ctx cancellation, then returns message.ErrClosed), waits for them, and
// releases the Subscriber. It is safe to call more than once.
func (s *Subscriber) Close() error {
	if s.life.Close() {
		s.admin.Close()
	}
	return nil
}

// subscription is one Subscribe call: a client, a dispatcher and the
// per-partition trackers.
type subscription struct {
	topic string
	group string
	cfg   *config
	cl    *kgo.Client
	d     *dispatch.Dispatcher

	mu    sync.Mutex
	parts map[int32]*partState

	ctx     context.Context // Subscribe's: carries message.WithReady
	gate    *delay.Gate     // SubscribeTier's (delay.go): holds records until due; nil for Subscribe
	fatal   error
	recycle bool // build recycles franz-go's records (see recordPool)

	rp     subReplay            // commits (replay.go)
	batch  []*dispatch.Delivery // the poll loop's reusable submit buffer
	strAvg int                  // bytes of key and ID per record in the last build
}

func (s *Subscriber) run(ctx context.Context, topic string, h message.Handler, bat *dispatch.Batch) error {
	sub := &subscription{
		topic: topic,
		group: s.cfg.Group,
		cfg:   &s.cfg,
		parts: make(map[int32]*partState),
		ctx:   ctx,
	}

	dcfg := dispatch.ConfigFor(s.cfg.SubscriberConfig)
	dcfg.OnError = s.cfg.handlerErrorObserver()
	dcfg.Batch = sub.batchSettle(bat) // batch.go: a batch's settlements, one lock per partition
	sub.d = dispatch.New(ctx, h, dcfg, sub.settled)
	sub.gate = newTierGate(ctx, sub)

	reset := kgo.NewOffset().AtStart()
	if s.cfg.start == StartLatest {
		reset = kgo.NewOffset().AtEnd()
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(s.brokers...),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(reset),
		// A crashed member's partitions move when its session times out
		// (see the package doc, "Crash recovery"): 10 s instead of
		// franz-go's 45 s, heartbeats every second.
		kgo.SessionTimeout(DefaultSessionTimeout),
		kgo.HeartbeatInterval(DefaultHeartbeatInterval),
		// The subscription commits itself (replay.go), with the settled
		// offsets above each commit point in the commit's metadata.
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(sub.assigned),
		kgo.OnPartitionsRevoked(sub.revoked),
		kgo.OnPartitionsLost(sub.lost),
		// Rebalance callbacks run only between polls, once a poll's records
		// are in the dispatcher (AllowRebalance in poll): records in hand
		// then always belong to the current assignment, so a fetch from
		// before a revocation can never be counted against a partition's
		// next assignment.
		kgo.BlockRebalanceOnPoll(),
		// Fetched records are decoded into recycled arrays: build copies
		// what it needs and recycles each record.
		kgo.WithPools(records),
	}, append(append(sub.commitCallback(), connHooks(s.cfg.obs, "subscriber")...), s.cfg.clientOpts...)...)
	kopts = append(kopts, tierClientOpts(ctx)...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		sub.d.Shutdown()
		return fmt.Errorf("kafka: subscribe %q: %w: %w", topic, message.ErrInvalidConfig, err)
	}
	sub.cl = cl
	sub.recycle = recyclable(cl)

	markDone := make(chan struct{})
	markStopped := make(chan struct{})
	go sub.markLoop(markDone, markStopped)

	sub.poll(ctx)
	sub.gate.Close() // held tier records stay uncommitted: fetched again next time

	// Graceful shutdown: no more fetching; let running handlers finish
	// (within the drain timeout), then commit what settled and leave.
	sub.d.Shutdown()
	close(markDone)
	<-markStopped
	sub.commitAll()
	cl.Close() // leaves the group; our revoke callback finds nothing left to do
	return sub.fatal
}

// poll fetches records and hands them to the dispatcher until ctx ends or a
// fatal error occurs.
func (sub *subscription) poll(ctx context.Context) {
	for {
		fetches := sub.cl.PollFetches(ctx)
		if !sub.handle(ctx, fetches) {
			sub.cl.AllowRebalance()
			return
		}
		sub.cl.AllowRebalance()
	}
}

// handle hands one poll's records to the dispatcher. It returns false when
// consuming must stop.
func (sub *subscription) handle(ctx context.Context, fetches kgo.Fetches) bool {
	if ctx.Err() != nil || fetches.IsClientClosed() {
		return false
	}
	var fatal error
	fetches.EachError(func(t string, p int32, err error) {
		if isFatalFetchErr(err) && fatal == nil {
			fatal = fmt.Errorf("kafka: consume %q partition %d: %w", t, p, err)
		}
	})
	if fatal != nil {
		sub.fatal = fatal
		return false
	}
	stopped := false
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if !stopped && len(p.Records) > 0 && !sub.submitPartition(ctx, p) {
			stopped = true
		}
	})
	return !stopped
}

func isFatalFetchErr(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.SaslAuthenticationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// submitPartition hands a partition's fetched records to the dispatcher in
// order. It returns false when consuming must stop.
func (sub *subscription) submitPartition(ctx context.Context, p kgo.FetchTopicPartition) bool {
	sub.mu.Lock()
	ps := sub.parts[p.Partition]
	sub.mu.Unlock()
	if ps == nil {
		return true // not (or no longer) ours
	}
	if sub.cfg.obs != nil {
		ps.noteFetch(&p) // for the lag (observe.go)
	}
	batch := sub.batch[:0]
	for rs := p.Records; len(rs) > 0; {
		n := min(len(rs), recChunk)
		b := sub.build(rs[:n], ps.scope)
		rs = rs[n:]
		for i := ps.add(b); i < len(b.run.Items); i++ {
			if b.skips > 0 && b.run.Settled(i) {
				continue // settled before a crash or rebalance (replay.go)
			}
			batch = append(batch, &b.run.Items[i].dl)
		}
	}
	defer func() { clear(batch); sub.batch = batch[:0] }()

	// No rebalance callback runs while we are here (kgo.BlockRebalanceOnPoll
	// holds OnPartitionsRevoked and OnPartitionsLost until the poll loop
	// calls AllowRebalance), so every record submitted belongs to the
	// current assignment of its partition.
	if sub.gate != nil {
		return sub.gate.Add(p.Partition, ps, sub.group, batch) == nil
	}
	if _, err := sub.d.SubmitBatch(ctx, batch); err != nil {
		return false // ctx ended or the dispatcher stopped
	}
	return true
}

// recChunk is the most records built in one array: the largest that the
// runtime still allocates as a small object, from memory it recycles
// without returning it to the operating system in between (large arrays
// cost page faults on first touch).
const recChunk = 32 << 10 / int(unsafe.Sizeof(rec{}))

// build turns fetched records of one partition into delivered messages, in
// one array, in the partition assignment's scope. The keys and IDs of the
// batch are written once, one after the other, into a buffer sized from
// the last build's average, and the strings alias it: bytes once written
// there never change (append writes past them, or, when the buffer is
// short, into a new one, and the strings made before keep the old one).
func (sub *subscription) build(rs []*kgo.Record, scope *dispatch.Scope) *recBatch {
	b := &recBatch{}
	b.run.Init(make([]rec, len(rs)))
	strs := make([]byte, 0, len(rs)*sub.strAvg+64)
	total := 0
	// The ID of a record from a non-ferry producer is
	// "<topic>-<partition>-<offset>": the same prefix for the whole batch,
	// and offsets mostly one more than the last.
	var prefix []byte
	var idt idText
	for i, r := range rs {
		rc := &b.run.Items[i]
		rc.offset, rc.epoch, rc.idx = r.Offset, r.LeaderEpoch, int32(i)
		m := &rc.msg
		m.Payload = r.Value
		m.Time = r.Timestamp
		// A header name that repeats keeps its last value, as Kafka's
		// Headers.lastHeader reads it; for HeaderID too, which never
		// shows in Headers.
		var id []byte
		for _, h := range r.Headers {
			if h.Key == HeaderID {
				id = h.Value
				continue
			}
			if m.Headers == nil {
				m.Headers = make(map[string]string, len(r.Headers))
			}
			m.Headers[h.Key] = string(h.Value)
		}
		k0 := len(strs)
		if len(r.Key) > 0 {
			strs = append(strs, r.Key...)
		}
		if len(id) > 0 {
			strs = append(strs, id...)
		} else {
			if prefix == nil {
				prefix = append(strconv.AppendInt(append([]byte(r.Topic), '-'), int64(r.Partition), 10), '-')
			}
			strs = append(strs, idt.of(prefix, r.Offset)...)
		}
		// strs[k0:] is the key, then the ID (never empty).
		kn := len(r.Key)
		if kn > 0 {
			m.Key = unsafe.String(&strs[k0], kn)
		}
		m.ID = unsafe.String(&strs[k0+kn], len(strs)-k0-kn)
		total += len(strs) - k0
		m.Delivery = message.Delivery{
			System:    System,
			Topic:     r.Topic,
			Group:     sub.group,
			Partition: r.Partition,
			Offset:    r.Offset,
			Attempt:   1, // here, so that the worker does not write it
			// The batch's timestamp type (Spring's DLT header needs it).
			LogAppendTime: r.Attrs.TimestampType() == 1,
		}
		rc.dl.Msg = m
		rc.dl.Ref = b
		rc.dl.Scope = scope
		if sub.recycle {
			r.Recycle() // nothing of r is used after this
		}
	}
	if len(rs) > 0 {
		sub.strAvg = min((total+len(rs)-1)/len(rs), 1<<10)
	}
	return b
}

// idText is the ID text "<prefix><offset>" of the offset last asked for,
// so that the next offset, when one more, costs an increment of that text
// rather than a conversion, and the ID one copy.
type idText struct {
	n    int64
	plen int    // length of the prefix at the start of text
	text []byte // prefix and the offset's digits; nil before the first
}

// of returns the text for offset n >= 0, valid until the next call. The
// prefix is the same in every call (one idText per build).
func (t *idText) of(prefix []byte, n int64) []byte {
	if t.text != nil && n == t.n+1 && n > 0 {
		t.n = n
		for i := len(t.text) - 1; i >= t.plen; i-- {
			if t.text[i] < '9' {
				t.text[i]++
				return t.text
			}
			t.text[i] = '0'
		}
		// All nines: "999" + 1 is "1000".
		t.text[t.plen] = '1'
		t.text = append(t.text, '0')
		return t.text
	}
	t.n, t.plen = n, len(prefix)
	t.text = strconv.AppendInt(append(t.text[:0], prefix...), n, 10)
	return t.text
}

// settled is the dispatcher's settle callback.
func (sub *subscription) settled(dl *dispatch.Delivery) {
	sub.observeHandled(dl)
	dl.Ref.(*recBatch).ps.settle(recOf(dl))
}

// markLoop commits advanced commit points once per commit interval
// (replay.go) and reports the lag.
func (sub *subscription) markLoop(done <-chan struct{}, stopped chan<- struct{}) {
	defer close(stopped)
	iv := min(100*time.Millisecond, sub.cfg.commitInterval)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			sub.commitTick()
			sub.reportLag()
		}
	}
}

// assigned starts tracking newly assigned partitions, each assignment in
// a dispatcher scope of its own.
func (sub *subscription) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	sub.gate.Drop(assigned[sub.topic]...) // a tier: start each assignment unpaused, nothing held
	var fresh []*partState
	sub.mu.Lock()
	for _, p := range assigned[sub.topic] {
		if old := sub.parts[p]; old != nil {
			old.kill()
			sub.d.Drain(old.scope)
		}
		sub.parts[p] = newPartState(sub.topic, p, sub.d.NewScope())
		fresh = append(fresh, sub.parts[p])
	}
	sub.mu.Unlock()
	sub.readSettled(cl, fresh) // replay.go: skip what the last owner settled
	// Ready (message.WithReady): franz-go calls this after every join,
	// with what is new to this member, empty when the group has more
	// members than the topic has partitions; the first call says the
	// member joined the group and holds its first assignment.
	message.SignalReady(sub.ctx)
}

// detach stops tracking the given partitions and starts draining them
// (dispatch.Dispatcher.Drain): their queued records leave the dispatcher,
// and their running handlers' context is cancelled once the drain timeout
// passed. It returns the detached states and, for each, a channel closed
// when none of its handlers runs any more.
func (sub *subscription) detach(partitions []int32) ([]*partState, []<-chan struct{}) {
	sub.mu.Lock()
	var gone []*partState
	for _, p := range partitions {
		if ps := sub.parts[p]; ps != nil {
			gone = append(gone, ps)
			delete(sub.parts, p)
		}
	}
	sub.mu.Unlock()
	sub.forgetLag(gone)
	sub.gate.Drop(partitions...) // a tier: nothing held of them is submitted any more
	idle := make([]<-chan struct{}, len(gone))
	for i, ps := range gone {
		idle[i] = sub.d.Drain(ps.scope)
	}
	return gone, idle
}

// revoked drains the revoked partitions, commits their settled prefixes
// and lets them go. Queued records of those partitions are dropped; the
// next owner consumes them from the committed offset. Running handlers
// finish with their context intact for the drain timeout; then their
// context (theirs only) is cancelled and they are waited for: the
// partitions are not given up while one of their handlers runs, so a key
// never runs on two members at once. (A handler that ignores its
// cancelled context holds up the rebalance until it returns; past the
// group's rebalance timeout the broker removes the member.)
func (sub *subscription) revoked(_ context.Context, cl *kgo.Client, revoked map[string][]int32) {
	gone, idle := sub.detach(revoked[sub.topic])
	if len(gone) == 0 {
		return
	}
	for _, ch := range idle {
		<-ch
	}
	sub.commitParts(gone, true) // best effort: uncommitted work is redelivered
}

// lost drops lost partitions without committing: another member may own
// them already, so their offsets are not ours to commit.
func (sub *subscription) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	gone, _ := sub.detach(lost[sub.topic]) // drained, not waited for
	for _, ps := range gone {
		ps.kill()
	}
}
