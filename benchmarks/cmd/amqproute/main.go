// Command amqproute measures what RabbitMQ's routing costs a confirmed
// publish for several group layouts behind a topic exchange, with raw
// amqp091-go (no ferry code on the path), so that the layout of ferry's
// sharded groups (a headers exchange with 64 bindings in front of 16 shard
// queues) can be compared with alternatives on the same broker in one run.
//
//	go run ./cmd/amqproute                      # every layout, 100 B, batches of 1,000
//	go run ./cmd/amqproute -mode p64 -n 50000   # 64 goroutines, one confirmed message each
//
// Every message carries what ferry's publisher puts on it: message_id,
// timestamp, the ferry-time header and the ferry-shard header (bucket =
// sequence number mod 64; the layouts with 16 bindings use mod 16), is
// persistent and mandatory. A cell publishes n messages to a fresh
// topology and checks that the queues hold n messages; layouts run
// interleaved A B C … C B A. Broker CPU is the beam.smp process's
// user+system time (from /proc) during the cell, per message.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// layout is a group topology behind the topic exchange.
type layout struct {
	name, doc string
	// declare builds it on ch below the topic exchange t and returns its
	// queues.
	declare func(ch *amqp091.Channel, t string) ([]string, error)
	mod     int  // ferry-shard = seq mod this
	rkShard bool // the routing key is the bucket (else empty)
}

func queues(ch *amqp091.Channel, base string, n int) ([]string, error) {
	qs := make([]string, n)
	for i := range qs {
		qs[i] = base + "." + strconv.Itoa(i)
		if _, err := ch.QueueDeclare(qs[i], true, false, false, false, nil); err != nil {
			return nil, err
		}
	}
	return qs, nil
}

// headersLayout: a headers exchange bound to t with "#", `bindings`
// bindings (x-match all, ferry-shard = "0".."bindings-1") spread over
// nq queues (binding b to queue b mod nq), an alternate exchange as ferry
// declares it.
func headersLayout(bindings, nq int) func(ch *amqp091.Channel, t string) ([]string, error) {
	return func(ch *amqp091.Channel, t string) ([]string, error) {
		x := t + ".g"
		if err := ch.ExchangeDeclare(x+".unsharded", "fanout", true, false, false, false, nil); err != nil {
			return nil, err
		}
		if err := ch.ExchangeDeclare(x, "headers", true, false, false, false, amqp091.Table{"alternate-exchange": x + ".unsharded"}); err != nil {
			return nil, err
		}
		qs, err := queues(ch, x, nq)
		if err != nil {
			return nil, err
		}
		if err := ch.QueueBind(qs[0], "", x+".unsharded", false, nil); err != nil {
			return nil, err
		}
		for b := range bindings {
			if err := ch.QueueBind(qs[b%nq], "", x, false, amqp091.Table{"x-match": "all", "ferry-shard": strconv.Itoa(b)}); err != nil {
				return nil, err
			}
		}
		return qs, ch.ExchangeBind(x, "#", t, false, nil)
	}
}

var layouts = []layout{
	{name: "plain", doc: "topic exchange -> 1 queue (ferry WithCompetingConsumers, raw amqp091 and Watermill in ferrybench)", mod: 64,
		declare: func(ch *amqp091.Channel, t string) ([]string, error) {
			qs, err := queues(ch, t+".g", 1)
			if err != nil {
				return nil, err
			}
			return qs, ch.QueueBind(qs[0], "#", t, false, nil)
		}},
	{name: "fanout-hop", doc: "topic exchange -> fanout exchange -> 1 queue (the exchange-to-exchange hop alone)", mod: 64,
		declare: func(ch *amqp091.Channel, t string) ([]string, error) {
			x := t + ".g"
			if err := ch.ExchangeDeclare(x, "fanout", true, false, false, false, nil); err != nil {
				return nil, err
			}
			qs, err := queues(ch, x, 1)
			if err != nil {
				return nil, err
			}
			if err := ch.QueueBind(qs[0], "", x, false, nil); err != nil {
				return nil, err
			}
			return qs, ch.ExchangeBind(x, "#", t, false, nil)
		}},
	{name: "topic-16q", doc: "topic exchange -> 16 queues, bound by routing key = bucket mod 16 (16 queues, no hop, no headers)", mod: 16, rkShard: true,
		declare: func(ch *amqp091.Channel, t string) ([]string, error) {
			qs, err := queues(ch, t+".g", 16)
			if err != nil {
				return nil, err
			}
			for i, q := range qs {
				if err := ch.QueueBind(q, strconv.Itoa(i), t, false, nil); err != nil {
					return nil, err
				}
			}
			return qs, nil
		}},
	{name: "direct-64", doc: "topic exchange -> direct exchange, 64 bindings by routing key = bucket -> 16 queues (a hashed lookup instead of header matching)", mod: 64, rkShard: true,
		declare: func(ch *amqp091.Channel, t string) ([]string, error) {
			x := t + ".g"
			if err := ch.ExchangeDeclare(x, "direct", true, false, false, false, nil); err != nil {
				return nil, err
			}
			qs, err := queues(ch, x, 16)
			if err != nil {
				return nil, err
			}
			for b := range 64 {
				if err := ch.QueueBind(qs[b%16], strconv.Itoa(b), x, false, nil); err != nil {
					return nil, err
				}
			}
			return qs, ch.ExchangeBind(x, "#", t, false, nil)
		}},
	{name: "headers-1", doc: "headers exchange, 1 binding (x-match all, no keys: matches everything) -> 1 queue", mod: 64,
		declare: func(ch *amqp091.Channel, t string) ([]string, error) {
			x := t + ".g"
			if err := ch.ExchangeDeclare(x, "headers", true, false, false, false, nil); err != nil {
				return nil, err
			}
			qs, err := queues(ch, x, 1)
			if err != nil {
				return nil, err
			}
			if err := ch.QueueBind(qs[0], "", x, false, amqp091.Table{"x-match": "all"}); err != nil {
				return nil, err
			}
			return qs, ch.ExchangeBind(x, "#", t, false, nil)
		}},
	{name: "headers-64-1q", doc: "headers exchange, 64 bindings -> 1 queue (the binding count without the queue count)", mod: 64, declare: headersLayout(64, 1)},
	{name: "headers-16", doc: "headers exchange, 16 bindings (bucket mod 16) -> 16 queues (one binding per shard)", mod: 16, declare: headersLayout(16, 16)},
	{name: "headers-64", doc: "headers exchange, 64 bindings (bucket mod 64) -> 16 queues: ferry's default sharded group", mod: 64, declare: headersLayout(64, 16)},
}

var bucketNames = func() (n [64]string) {
	for i := range n {
		n[i] = strconv.Itoa(i)
	}
	return n
}()

const fakeID = "01900000-0000-7000-8000-000000000000"

type sample struct {
	rate      float64
	brokerCPU float64 // µs per message
	clientCPU float64 // this process, µs per message
}

func main() {
	var (
		url    = flag.String("amqp", envOr("FERRY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL")
		n      = flag.Int("n", 100_000, "messages per cell")
		size   = flag.Int("size", 100, "payload bytes")
		batch  = flag.Int("batch", 1000, "messages per confirmed batch (mode batch)")
		mode   = flag.String("mode", "batch", "batch: one batch at a time, every confirm awaited; p64: 64 goroutines, one confirmed message each, on one channel")
		rounds = flag.Int("rounds", 1, "rounds of A B C ... C B A")
		only   = flag.String("layouts", "", "comma-separated layouts (default all)")
	)
	flag.Parse()
	sel := layouts
	if *only != "" {
		sel = nil
		for _, name := range strings.Split(*only, ",") {
			i := slices.IndexFunc(layouts, func(l layout) bool { return l.name == name })
			if i < 0 {
				fatalf("unknown layout %q", name)
			}
			sel = append(sel, layouts[i])
		}
	}
	conn, err := amqp091.Dial(*url)
	if err != nil {
		fatalf("%v", err)
	}
	defer conn.Close()
	beam := beamPID()
	payload := make([]byte, *size)
	run := time.Now().Unix()
	started := time.Now()
	load0 := loadavg()
	res := map[string][]sample{}
	order := append(slices.Clone(sel), reversed(sel)...)
	seq := 0
	for range *rounds {
		for _, l := range order {
			seq++
			t := fmt.Sprintf("rt.%d.%d", run, seq)
			s, err := cell(conn, l, t, *n, payload, *mode, *batch, beam)
			cleanup(conn, t)
			if err != nil {
				fatalf("%s: %v", l.name, err)
			}
			fmt.Fprintf(os.Stderr, "%-14s %8.0f msgs/s  broker %.1f µs/msg  client %.1f µs/msg\n", l.name, s.rate, s.brokerCPU, s.clientCPU)
			res[l.name] = append(res[l.name], s)
		}
	}
	fmt.Printf("amqproute %s on %s, load average %s at start, %s at end; n=%d, %d B, mode %s\n\n",
		strings.Join(os.Args[1:], " "), started.UTC().Format("2006-01-02 15:04 UTC"), load0, loadavg(), *n, *size, *mode)
	fmt.Printf("| layout | msgs/s median [min–max] | vs plain | CPU µs/msg broker / client | what |\n|---|---|---|---|---|\n")
	base := median(res["plain"], func(s sample) float64 { return s.rate })
	for _, l := range sel {
		ss := res[l.name]
		r := median(ss, func(s sample) float64 { return s.rate })
		lo := slices.MinFunc(ss, func(a, b sample) int { return cmpF(a.rate, b.rate) }).rate
		hi := slices.MaxFunc(ss, func(a, b sample) int { return cmpF(a.rate, b.rate) }).rate
		vs := "–"
		if base > 0 {
			vs = fmt.Sprintf("%.2f×", r/base)
		}
		fmt.Printf("| %s | %.0f [%.0f–%.0f] | %s | %.1f / %.1f | %s |\n", l.name, r, lo, hi, vs,
			median(ss, func(s sample) float64 { return s.brokerCPU }), median(ss, func(s sample) float64 { return s.clientCPU }), l.doc)
	}
}

func cell(conn *amqp091.Connection, l layout, t string, n int, payload []byte, mode string, batch int, beam int) (sample, error) {
	ch, err := conn.Channel()
	if err != nil {
		return sample{}, err
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(t, "topic", true, false, false, false, nil); err != nil {
		return sample{}, err
	}
	qs, err := l.declare(ch, t)
	if err != nil {
		return sample{}, fmt.Errorf("declare: %w", err)
	}
	pch, err := conn.Channel()
	if err != nil {
		return sample{}, err
	}
	defer pch.Close()
	if err := pch.Confirm(false); err != nil {
		return sample{}, err
	}
	var returned atomic.Int64
	rets := pch.NotifyReturn(make(chan amqp091.Return, 1024))
	go func() {
		for range rets {
			returned.Add(1)
		}
	}()
	ctx := context.Background()
	pub := func(i int) (*amqp091.DeferredConfirmation, error) {
		b := bucketNames[i%l.mod]
		rk := ""
		if l.rkShard {
			rk = b
		}
		now := time.Now()
		return pch.PublishWithDeferredConfirmWithContext(ctx, t, rk, true, false, amqp091.Publishing{
			DeliveryMode: amqp091.Persistent, MessageId: fakeID, Timestamp: now,
			Headers: amqp091.Table{"ferry-time": now.UnixMilli(), "ferry-shard": b}, Body: payload,
		})
	}
	wait := func(dc *amqp091.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err == nil && !ok {
			err = errors.New("nacked")
		}
		return err
	}
	cpu0, self0 := procCPU(beam), selfCPU()
	t0 := time.Now()
	switch mode {
	case "batch":
		dcs := make([]*amqp091.DeferredConfirmation, 0, batch)
		for lo := 0; lo < n; lo += batch {
			dcs = dcs[:0]
			for i := lo; i < min(lo+batch, n); i++ {
				dc, err := pub(i)
				if err != nil {
					return sample{}, err
				}
				dcs = append(dcs, dc)
			}
			for _, dc := range dcs {
				if err := wait(dc); err != nil {
					return sample{}, err
				}
			}
		}
	case "p64":
		var (
			next     atomic.Int64
			wg       sync.WaitGroup
			firstErr atomic.Pointer[error]
		)
		for range 64 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n || firstErr.Load() != nil {
						return
					}
					dc, err := pub(i) // one channel shared, as in ferrybench's raw publish-64
					if err == nil {
						err = wait(dc)
					}
					if err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
		wg.Wait()
		if e := firstErr.Load(); e != nil {
			return sample{}, *e
		}
	default:
		return sample{}, fmt.Errorf("unknown mode %q", mode)
	}
	dur := time.Since(t0)
	cpu, self := procCPU(beam)-cpu0, selfCPU()-self0
	if r := returned.Load(); r > 0 {
		return sample{}, fmt.Errorf("%d messages returned unroutable", r)
	}
	total := 0
	for _, q := range qs {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			return sample{}, err
		}
		if len(qs) > 1 && st.Messages < n/len(qs)/2 {
			return sample{}, fmt.Errorf("queue %s holds %d of %d messages: not spread", q, st.Messages, n)
		}
		total += st.Messages
	}
	if total != n {
		return sample{}, fmt.Errorf("queues hold %d messages, want %d", total, n)
	}
	return sample{rate: float64(n) / dur.Seconds(), brokerCPU: perMsg(cpu, n), clientCPU: perMsg(self, n)}, nil
}

// cleanup deletes what any layout declared on t (each on a channel of its
// own: a failed delete closes its channel).
func cleanup(conn *amqp091.Connection, t string) {
	do := func(f func(ch *amqp091.Channel) error) {
		if ch, err := conn.Channel(); err == nil {
			_ = f(ch)
			_ = ch.Close()
		}
	}
	for i := range 16 {
		do(func(ch *amqp091.Channel) error {
			_, err := ch.QueueDelete(t+".g."+strconv.Itoa(i), false, false, false)
			return err
		})
	}
	for _, x := range []string{t + ".g", t + ".g.unsharded", t} {
		do(func(ch *amqp091.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
}

// beamPID finds the RabbitMQ node's Erlang VM (0 if none is visible).
func beamPID() int {
	ms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "beam") {
			cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(m), "cmdline"))
			if strings.Contains(string(cmd), "rabbit") {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(m)))
				return pid
			}
		}
	}
	return 0
}

func perMsg(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

// selfCPU is this process's user+system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is pid's user+system time (0 if unknown).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	switch n := len(v); {
	case n == 0:
		return 0
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func reversed[T any](s []T) []T {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "amqproute: FAIL: "+format+"\n", args...)
	os.Exit(1)
}
