package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
)

// memberKey is the second key of the shared advisory lock every running
// relay of a table holds (its first key is the table's class ID, and the
// shards use 0..shards-1), so that relays can count each other.
const memberKey = 0x7fffffff

// pgCoord owns the PostgreSQL side of a relay: one connection (conn) that
// holds the relay's advisory locks, one worker per owned shard. Workers
// read and write on the pool, and ping conn before each read (guard).
type pgCoord struct {
	r     *Relay
	mu    sync.Mutex // serialises the use of conn
	conn  *sql.Conn
	owned map[int]*running
}

type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *Relay) runPostgres(ctx context.Context) error {
	c := &pgCoord{r: r, owned: map[int]*running{}}
	var wg sync.WaitGroup
	if r.o.notify {
		wg.Go(func() { r.listen(ctx) })
	}
	if r.o.retention > 0 {
		wg.Go(func() { r.purgeLoop(ctx) })
	}
	defer wg.Wait()
	defer c.releaseAll()
	for {
		c.tick(ctx)
		if !sleep(ctx, r.rebalance) {
			return nil
		}
	}
}

// queryRow runs one query on the lock connection.
func (c *pgCoord) queryRow(ctx context.Context, dst any, q string, args ...any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errNoConn
	}
	// Not cancelled with the relay: see ops.
	qctx, cancel := dbContext()
	defer cancel()
	return c.conn.QueryRowContext(qctx, q, args...).Scan(dst)
}

// tick connects if needed, then moves the relay's shard count towards its
// fair share: ceil(shards / running relays).
func (c *pgCoord) tick(ctx context.Context) {
	r := c.r
	cls := r.o.classID
	if c.conn == nil {
		conn, err := r.o.db.Conn(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.fail("connect", -1, err)
			}
			return
		}
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		var ok bool
		if err := c.queryRow(ctx, &ok, `SELECT pg_try_advisory_lock_shared($1::int4, $2::int4)`, cls, memberKey); err != nil || !ok {
			if ctx.Err() == nil {
				r.fail("join the relays of the table", -1, errors.Join(err, errors.New("shared member lock not granted")))
			}
			c.reset()
			return
		}
	}
	var members int
	err := c.queryRow(ctx, &members, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2 AND granted`, cls, memberKey)
	if err != nil {
		if ctx.Err() == nil {
			r.fail("count the relays (reconnecting)", -1, err)
			c.reset()
		}
		return
	}
	members = max(members, 1)
	shards := r.o.shards
	fair := (shards + members - 1) / members
	if mutant == mutantNoShardLock {
		fair = shards
	}
	// Hand over shards beyond the fair share, after their batch.
	for s := range c.owned {
		if len(c.owned) <= fair {
			break
		}
		c.release(ctx, s)
		if c.conn == nil {
			return
		}
	}
	if len(c.owned) >= fair {
		return
	}
	for _, s := range rand.Perm(shards) {
		if len(c.owned) >= fair || ctx.Err() != nil {
			break
		}
		if c.owned[s] != nil {
			continue
		}
		got := true
		if mutant != mutantNoShardLock {
			if err := c.queryRow(ctx, &got, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`, cls, s); err != nil {
				if ctx.Err() == nil {
					r.fail("lock a shard (reconnecting)", s, err)
					c.reset()
				}
				return
			}
		}
		if got {
			c.start(ctx, s)
		}
	}
}

func (c *pgCoord) start(ctx context.Context, s int) {
	wctx, cancel := context.WithCancel(ctx)
	w := c.r.newWorker([]int{s}, dbOps{c.r.o.db}, c.ping)
	run := &running{cancel: cancel, done: make(chan struct{})}
	c.owned[s] = run
	c.r.owned.Store(int32(len(c.owned)))
	c.r.info("took shard", "shard", s, "owned", len(c.owned))
	go func() {
		defer close(run.done)
		w.run(wctx)
	}()
}

// ping checks that the lock session is alive: then it holds the shard
// locks (they are released only after the shard's worker stopped).
func (c *pgCoord) ping() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errNoConn
	}
	ctx, cancel := dbContext()
	defer cancel()
	return c.conn.PingContext(ctx)
}

// stop stops shard s's worker and waits until its batch in flight is
// done.
func (c *pgCoord) stop(s int) {
	run := c.owned[s]
	if run == nil {
		return
	}
	run.cancel()
	<-run.done
	delete(c.owned, s)
	c.r.owned.Store(int32(len(c.owned)))
}

// release hands shard s over: its worker stops after its batch, then the
// lock is released.
func (c *pgCoord) release(ctx context.Context, s int) {
	c.stop(s)
	var ok bool
	if err := c.queryRow(context.WithoutCancel(ctx), &ok, `SELECT pg_advisory_unlock($1::int4, $2::int4)`, c.r.o.classID, s); err != nil {
		c.r.fail("unlock a shard (reconnecting)", s, err)
		c.reset()
		return
	}
	c.r.info("handed over shard", "shard", s, "owned", len(c.owned))
}

// reset stops every worker and drops the connection (and with it every
// lock).
func (c *pgCoord) reset() {
	for s := range c.owned {
		c.stop(s)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		discard(c.conn)
		c.conn = nil
	}
}

// releaseAll ends the relay: workers finish their batches, the locks are
// released.
func (c *pgCoord) releaseAll() {
	for s := range c.owned {
		c.stop(s)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return
	}
	// Closing the session is what releases its locks for sure; a
	// pooled connection would keep them.
	discard(c.conn)
	c.conn = nil
}

// discard closes conn and removes it from the pool, ending its session.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// errNotPgx: the driver is not pgx's, which LISTEN needs.
var errNotPgx = errors.New("outbox: the NOTIFY wake-up needs the pgx driver (github.com/jackc/pgx/v5/stdlib); polling only")

// listen keeps a LISTEN connection and wakes the workers of the shards
// named by the notifications; after each (re)connection it wakes all of
// them, for rows committed while no one listened.
func (r *Relay) listen(ctx context.Context) {
	bo := r.newBackoff()
	for {
		err := r.listenOnce(ctx)
		r.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errNotPgx) {
			r.fail("listen", -1, err)
			return
		}
		r.fail("listen (polling meanwhile)", -1, err)
		if !sleep(ctx, bo.NextBackOff()) {
			return
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	conn, err := r.o.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discard(conn)
	if _, err := conn.ExecContext(ctx, `LISTEN "`+r.o.channel+`"`); err != nil {
		return err
	}
	r.listening.Store(true)
	r.wakeAll()
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return errNotPgx
		}
		for {
			n, err := pc.Conn().WaitForNotification(ctx)
			if err != nil {
				return err
			}
			if s, err := strconv.Atoi(n.Payload); err == nil {
				r.wake(s)
			} else {
				r.wakeAll()
			}
		}
	})
}
