// Command ferrybench measures ferry's adapters against the raw clients they
// are built on (a Go channel, franz-go, amqp091-go) and against Watermill
// (GoChannel, watermill-kafka on Sarama, watermill-amqp), on the same broker
// in the same run, and writes the results as markdown tables with ratios.
//
//	go run ./cmd/ferrybench -quick            # small counts, for development
//	go run ./cmd/ferrybench -out results/latest.md   # the full run (make bench)
//
// Workloads (each for 100 B and 1 KiB payloads):
//
//   - publish-batch: Publish(ctx, topic, batch...) of -batch messages per
//     call, one call at a time, each returning once the broker accepted the
//     whole batch (raw Kafka: ProduceSync of the batch; raw AMQP: the batch
//     published with deferred confirms, then every confirm awaited).
//   - publish-64: 64 goroutines, each publishing one message per call and
//     waiting for it (raw Kafka: one ProduceSync per call; raw AMQP: one
//     confirmed publish per call on a shared confirm-mode channel).
//   - consume-c1 / consume-c16: drain a backlog with per-message settlement
//     (ferry: handler returns nil at concurrency 1 or 16; raw Kafka: poll +
//     MarkCommitRecords with autocommit of marks; raw AMQP: manual ack of each
//     delivery; Watermill: msg.Ack()). Timed from the first to the last
//     message received, so group joins are not counted.
//   - latency: a fixed offered rate; each message carries its scheduled send
//     time and latency is receive time minus scheduled time (no coordinated
//     omission), recorded in an HDR histogram.
//
// Every cell counts and checksums what was received (consume and latency
// cells: every payload; publish cells: the broker's count of stored
// messages, and for inmem a full read-back) and the program exits non-zero
// on a lost, duplicate or unexpected message.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

type workload string

const (
	wPubBatch workload = "publish-batch"
	wPub64    workload = "publish-64"
	wCons1    workload = "consume-c1"
	wCons16   workload = "consume-c16"
	wLatency  workload = "latency"
)

var allWorkloads = []workload{wPubBatch, wPub64, wCons1, wCons16, wLatency}

// cell is one measurement: one workload, size and variant.
type cell struct {
	n      int
	setup  func(ctx context.Context) error // untimed
	run    func(ctx context.Context) error // timed
	verify func(ctx context.Context) error // untimed; nil error = all received
	close  func()                          // untimed
	chk    *checker                        // consume and latency cells
}

// system is one adapter family: its variants and how to build a cell.
type system interface {
	name() string
	variants() []string
	// count returns the message count of a cell of this system.
	cell(w workload, size int, variant string, n int) (*cell, error)
	// service is the broker's name in scripts/services.sh ("" for none),
	// for the service lock (see lockService).
	service() string
	close()
}

type config struct {
	quick      bool
	rounds     int
	batch      int
	nInmem     int
	nKafka     int
	nAMQP      int
	wmCap      int // Watermill cells run at most this many messages
	wmSlowCap  int // Watermill's per-message-synchronous batch publish
	latSeconds float64
	rates      map[string]float64
	sizes      []int
	kafka      []string
	amqpURL    string
	only       *regexp.Regexp
	timeout    time.Duration
	rawProps   bool
}

var cfg config

type sample struct {
	dur    time.Duration
	n      int
	cpu    time.Duration
	allocs uint64
	p50    float64 // latency, µs
	p99    float64
	p999   float64
	maxLat float64
}

func (s sample) rate() float64 { return float64(s.n) / s.dur.Seconds() }

type result struct {
	system  string
	w       workload
	size    int
	variant string
	samples []sample
	rate    float64
}

func main() {
	var (
		quick   = flag.Bool("quick", false, "small counts for development")
		rounds  = flag.Int("rounds", 2, "rounds of A B C C B A (each gives every variant two samples)")
		batch   = flag.Int("batch", 1000, "messages per Publish call in publish-batch")
		systems = flag.String("systems", "inmem,kafka,amqp", "systems to run")
		only    = flag.String("only", "", "regexp on system/workload/size/variant: run matching cells only")
		out     = flag.String("out", "results/latest.md", "markdown output file")
		update  = flag.String("update", "", "also replace the text between the ferrybench:begin and ferrybench:end markers of this file (BENCHMARKS.md) with the results")
		cpuprof = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		kafkaB  = flag.String("kafka", envOr("FERRY_KAFKA_BROKERS", "127.0.0.1:9092"), "Kafka seed brokers, comma separated")
		amqpURL = flag.String("amqp", envOr("FERRY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL")
		nInmem  = flag.Int("n-inmem", 1_000_000, "messages per inmem cell")
		nKafka  = flag.Int("n-kafka", 1_000_000, "messages per Kafka cell")
		nAMQP   = flag.Int("n-amqp", 200_000, "messages per RabbitMQ cell")
		wmCap   = flag.Int("wm-cap", 200_000, "at most this many messages per Watermill cell")
		wmSlow  = flag.Int("wm-slow-cap", 20_000, "at most this many messages per Watermill publish-batch cell (one synchronous send per message)")
		latSec  = flag.Float64("latency-seconds", 10, "duration of the offered load in latency cells")
		rInmem  = flag.Float64("rate-inmem", 50_000, "offered rate (msgs/s) of inmem latency cells")
		rKafka  = flag.Float64("rate-kafka", 10_000, "offered rate (msgs/s) of Kafka latency cells")
		rAMQP   = flag.Float64("rate-amqp", 5_000, "offered rate (msgs/s) of RabbitMQ latency cells")
		sizes   = flag.String("sizes", "100,1024", "payload sizes in bytes")
		timeout = flag.Duration("cell-timeout", 10*time.Minute, "fail a cell that takes longer")
		rawProp = flag.Bool("raw-props", false, "diagnostic: raw publishes carry what ferry adds to each message (AMQP: message id, timestamp, ferry-time and ferry-shard headers; Kafka: the ferry-id header and a timestamp)")
	)
	flag.Parse()
	cfg = config{
		quick: *quick, rounds: *rounds, batch: *batch,
		nInmem: *nInmem, nKafka: *nKafka, nAMQP: *nAMQP,
		wmCap: *wmCap, wmSlowCap: *wmSlow, latSeconds: *latSec,
		rates:    map[string]float64{"inmem": *rInmem, "kafka": *rKafka, "amqp": *rAMQP},
		kafka:    strings.Split(*kafkaB, ","),
		amqpURL:  *amqpURL,
		timeout:  *timeout,
		rawProps: *rawProp,
	}
	if *quick {
		cfg.rounds = 1
		cfg.nInmem, cfg.nKafka, cfg.nAMQP = 100_000, 50_000, 10_000
		cfg.wmCap, cfg.wmSlowCap = 10_000, 2_000
		cfg.latSeconds = 2
	}
	for _, s := range strings.Split(*sizes, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < minSize {
			fatalf("bad size %q: want an integer >= %d", s, minSize)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	if *only != "" {
		cfg.only = regexp.MustCompile(*only)
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		defer pprof.StopCPUProfile()
	}

	started := time.Now()
	var results []*result
	for _, name := range strings.Split(*systems, ",") {
		var sys system
		var err error
		switch name {
		case "inmem":
			sys = newInmemSystem()
		case "kafka":
			sys, err = retry(func() (system, error) { return newKafkaSystem(cfg.kafka) })
		case "amqp":
			sys, err = retry(func() (system, error) { return newAMQPSystem(cfg.amqpURL) })
		default:
			err = fmt.Errorf("unknown system %q", name)
		}
		if err != nil {
			pprof.StopCPUProfile()
			fatalf("%s: %v", name, err)
		}
		rs, err := runSystem(sys)
		sys.close()
		results = append(results, rs...)
		if err != nil {
			pprof.StopCPUProfile()
			if *out != "" && len(results) > 0 {
				// keep what was measured; -update is not applied
				md := fmt.Sprintf("**Incomplete run, stopped by an error:** %v\n\n", err) + report(results, started, time.Since(started), os.Args[1:])
				if werr := writeOut(*out, md); werr == nil {
					fmt.Fprintf(os.Stderr, "wrote the cells measured so far to %s\n", *out)
				}
			}
			fatalf("%v", err)
		}
	}
	md := report(results, started, time.Since(started), os.Args[1:])
	if *out != "" {
		if err := writeOut(*out, md); err != nil {
			fatalf("%v", err)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", *out)
	}
	if *update != "" {
		if err := updateFile(*update, md); err != nil {
			fatalf("%v", err)
		}
		fmt.Fprintf(os.Stderr, "updated %s\n", *update)
	}
	fmt.Print(md)
}

func writeOut(path, md string) error {
	if i := strings.LastIndex(path, "/"); i > 0 {
		_ = os.MkdirAll(path[:i], 0o755)
	}
	return os.WriteFile(path, []byte(md), 0o644)
}

const (
	beginMarker = "<!-- ferrybench:begin -->"
	endMarker   = "<!-- ferrybench:end -->"
)

func updateFile(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s section to replace", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + md + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferrybench: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func countFor(sys, variant string, w workload) int {
	n := map[string]int{"inmem": cfg.nInmem, "kafka": cfg.nKafka, "amqp": cfg.nAMQP}[sys]
	if w == wLatency {
		n = int(cfg.rates[sys] * cfg.latSeconds)
	}
	if variant == "watermill" && w != wLatency {
		n = min(n, cfg.wmCap)
		if w == wPubBatch && sys != "inmem" {
			n = min(n, cfg.wmSlowCap)
		}
	}
	return n
}

func runSystem(sys system) ([]*result, error) {
	var out []*result
	vars := sys.variants()
	order := append(slices.Clone(vars), reversed(vars)...)
	for _, w := range allWorkloads {
		for _, size := range cfg.sizes {
			byVar := map[string]*result{}
			for _, v := range vars {
				if !applicable(w, v) { // batch.go
					continue
				}
				key := fmt.Sprintf("%s/%s/%d/%s", sys.name(), w, size, v)
				if cfg.only != nil && !cfg.only.MatchString(key) {
					continue
				}
				byVar[v] = &result{system: sys.name(), w: w, size: size, variant: v}
				out = append(out, byVar[v])
			}
			for r := range cfg.rounds {
				for _, v := range order {
					res := byVar[v]
					if res == nil {
						continue
					}
					n := countFor(sys.name(), v, w)
					s, err := runCell(sys, w, size, v, n)
					var se *setupError
					if errors.As(err, &se) {
						// The shared brokers get restarted by test suites:
						// give a failed setup (nothing measured yet) one
						// more chance.
						fmt.Fprintf(os.Stderr, "setup failed, retrying in 15s: %v\n", err)
						time.Sleep(15 * time.Second)
						s, err = runCell(sys, w, size, v, n)
					}
					if err != nil {
						return out, fmt.Errorf("%s/%s/%dB/%s round %d: %w", sys.name(), w, size, v, r+1, err)
					}
					res.samples = append(res.samples, s)
					res.rate = cfg.rates[sys.name()]
					if w == wLatency {
						fmt.Fprintf(os.Stderr, "%-6s %-14s %5dB %-9s n=%-8d p50=%.0fµs p99=%.0fµs p99.9=%.0fµs max=%.0fµs cpu=%.2fµs/msg allocs=%.1f/msg\n",
							sys.name(), w, size, v, s.n, s.p50, s.p99, s.p999, s.maxLat, perMsgUS(s.cpu, s.n), float64(s.allocs)/float64(s.n))
					} else {
						fmt.Fprintf(os.Stderr, "%-6s %-14s %5dB %-9s n=%-8d %10.0f msgs/s cpu=%.2fµs/msg allocs=%.1f/msg\n",
							sys.name(), w, size, v, s.n, s.rate(), perMsgUS(s.cpu, s.n), float64(s.allocs)/float64(s.n))
					}
				}
			}
		}
	}
	return out, nil
}

func reversed[T any](s []T) []T {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func perMsgUS(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

func runCell(sys system, w workload, size int, variant string, n int) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	fmt.Fprintf(os.Stderr, "%s start %s/%s/%dB/%s n=%d\n", time.Now().Format("15:04:05"), sys.name(), w, size, variant, n)
	latRate = cfg.rates[sys.name()]
	release, err := lockService(sys.service())
	if err != nil {
		return sample{}, &setupError{err}
	}
	defer release()
	c, err := sys.cell(w, size, variant, n)
	if err != nil {
		return sample{}, &setupError{err}
	}
	if c.close != nil {
		defer c.close()
	}
	if c.setup != nil {
		if err := c.setup(ctx); err != nil {
			return sample{}, &setupError{err}
		}
	}
	runtime.GC()
	m0, cpu0, t0 := mallocs(), cpuTime(), time.Now()
	err = c.run(ctx)
	dur := time.Since(t0)
	cpu1, m1 := cpuTime(), mallocs()
	if err != nil {
		return sample{}, fmt.Errorf("run: %w", err)
	}
	if c.chk != nil && !c.chk.latency {
		// consume: first to last message received
		if d := c.chk.span(); d > 0 {
			dur = d
		}
	}
	if c.verify != nil {
		if err := c.verify(ctx); err != nil {
			return sample{}, fmt.Errorf("verify: %w", err)
		}
	}
	s := sample{dur: dur, n: c.n, cpu: cpu1 - cpu0, allocs: m1 - m0}
	if c.chk != nil && c.chk.latency {
		h := c.chk.hist
		s.p50, s.p99, s.p999 = float64(h.ValueAtQuantile(50)), float64(h.ValueAtQuantile(99)), float64(h.ValueAtQuantile(99.9))
		s.maxLat = float64(h.Max())
	}
	return s, nil
}

// setupError is a failure before anything was measured.
type setupError struct{ err error }

func (e *setupError) Error() string { return "setup: " + e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// retry connects up to three times, 15 s apart (a test suite may be
// restarting the shared broker).
func retry(f func() (system, error)) (system, error) {
	var err error
	for i := range 3 {
		var s system
		if s, err = f(); err == nil {
			return s, nil
		}
		if i < 2 {
			fmt.Fprintf(os.Stderr, "%v; retrying in 15s\n", err)
			time.Sleep(15 * time.Second)
		}
	}
	return nil, err
}

// lockService takes a shared lock on the lock file through which the
// repository's tests share a broker of scripts/services.sh
// (internal/testenv/lock.go): a test that restarts the broker takes it
// exclusively, so it waits until the cell is done, and a cell waits while
// a restart runs. The lock is held for one cell; release drops it and
// pauses briefly so that a waiting restart gets its turn between cells.
func lockService(service string) (release func(), err error) {
	if service == "" {
		return func() {}, nil
	}
	path := filepath.Join(os.TempDir(), "ferry-testenv-"+service+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("service lock: %w", err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("service lock %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		f.Close() // drops the lock
		time.Sleep(200 * time.Millisecond)
	}, nil
}
