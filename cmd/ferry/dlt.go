package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

const dltLong = `dlt inspects and repairs a dead-letter topic (DLT): the topic where the
retry middleware (retry.WithDeadLetter) puts the messages whose handler
kept failing, with headers saying why. Both ferry's ferry-dlt-* headers
and Spring Kafka's kafka_dlt-* headers are understood.

What "the messages on a DLT" means depends on the broker:

Kafka: a DLT is a topic, an append-only log from which single records
cannot be removed. ferry records which dead letters were replayed or
purged in a companion topic, <dlt>.ferry-settled (compacted, one record
per settled dead letter, created at the first replay or purge); ls, show
and replay skip the settled ones (ls --all shows them too). The DLT's
consumer groups are not used and their offsets are not moved.

RabbitMQ: a DLT is an exchange, and its messages are in the queues of the
groups that consume it (amqp adapter: <dlt>.<group>.<shard>, or
<dlt>.<group> for competing consumers). dlt reads the queues of one group,
--group (default "default"); each group has its own copy. ls and show
take each message with basic.get and give it back unacknowledged when
they finish, so the messages stay in their queues in their order, but the
broker flags them redelivered (a quorum queue counts a delivery: with an
x-delivery-limit, looking often enough drops them). replay and purge
acknowledge (remove) only the messages they republished or purged.

replay republishes each dead letter to its original topic (or --to) with
the same ID, key, payload, time and headers, minus the dead-letter
headers, so a consumer's dedupe (keyed by ID) still recognises it. It is
safe to interrupt (Ctrl-C) and rerun: a dead letter is settled (Kafka:
recorded in <dlt>.ferry-settled; RabbitMQ: acknowledged) only after its
republish was acknowledged by the broker, and the rerun skips settled
ones. An interruption between the two republishes at most one batch
(--batch) again on the rerun; those copies keep their IDs.`

func newDLT(ios *ioStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlt",
		Short: "List, show, replay and purge dead letters",
		Long:  dltLong,
	}
	cmd.AddCommand(newDLTList(ios), newDLTShow(ios), newDLTReplay(ios), newDLTPurge(ios))
	return cmd
}

// dltEntry is one dead letter.
type dltEntry struct {
	msg      *message.Message
	info     retry.DeadLetterInfo
	parseErr error
	where    string // "partition P, offset O" or "queue Q"
	settled  string // Kafka: the ledger's action for it, "" if not settled
	// RabbitMQ: how to acknowledge it.
	ack func() error
	// Kafka: its position, the ledger key.
	partition int32
	offset    int64
}

// when is the time used by since= and by ls: the last failure, else the
// message's time.
func (e *dltEntry) when() time.Time {
	if !e.info.LastFailure.IsZero() {
		return e.info.LastFailure
	}
	return e.msg.Time
}

// dltStore is a DLT on one broker.
type dltStore interface {
	// scan calls visit for each dead letter (Kafka: not settled, unless
	// opened with all). visit returning errStop ends the scan early. The
	// store calls flush before it lets go of what it read (RabbitMQ:
	// before it closes a queue's channel, which gives back the
	// unacknowledged messages) and at the end.
	scan(ctx context.Context, visit func(*dltEntry) error, flush func() error) error
	// total is the number of dead letters scan is about to visit, as
	// far as known in advance.
	total() int64
	// settle records es as done (replayed or purged).
	settle(ctx context.Context, es []*dltEntry, action string) error
	close() error
}

var errStop = errors.New("stop")

type dltFlags struct {
	group string
}

func (f *dltFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.group, "group", "default", "RabbitMQ: the group whose queues hold the DLT's messages")
}

func openDLT(ctx context.Context, b *broker, topic string, f dltFlags, all bool) (dltStore, error) {
	if b.kafka {
		return openKafkaDLT(ctx, b, topic, all)
	}
	return openAMQPDLT(ctx, b, topic, f.group)
}

// --- filters

type filter struct {
	errRE       *regexp.Regexp
	key, id     *string
	topic, grp  *string
	since       time.Time
	description []string
}

func parseFilters(fs []string) (filter, error) {
	var f filter
	for _, s := range fs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return f, usagef("--filter %q: want error=RE, key=K, id=ID, topic=T, group=G or since=TIME", s)
		}
		switch k {
		case "error":
			re, err := regexp.Compile(v)
			if err != nil {
				return f, usagef("--filter %q: %v", s, err)
			}
			f.errRE = re
		case "key":
			f.key = &v
		case "id":
			f.id = &v
		case "topic":
			f.topic = &v
		case "group":
			f.grp = &v
		case "since":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				d, derr := time.ParseDuration(v)
				if derr != nil || d <= 0 {
					return f, usagef("--filter %q: want an RFC 3339 time (2026-12-02T03:00:00Z) or a duration back from now (2h)", s)
				}
				t = time.Now().Add(-d)
			}
			f.since = t
		default:
			return f, usagef("--filter %q: unknown filter %q; want error=RE, key=K, id=ID, topic=T, group=G or since=TIME", s, k)
		}
		f.description = append(f.description, s)
	}
	return f, nil
}

func (f filter) match(e *dltEntry) bool {
	switch {
	case f.errRE != nil && !f.errRE.MatchString(e.info.Error):
	case f.key != nil && e.msg.Key != *f.key:
	case f.id != nil && e.msg.ID != *f.id:
	case f.topic != nil && e.info.Topic != *f.topic:
	case f.grp != nil && e.info.Group != *f.grp:
	case !f.since.IsZero() && e.when().Before(f.since):
	default:
		return true
	}
	return false
}

// --- ls

type lsRow struct {
	key            string
	count          int
	oldest, newest time.Time
}

func newDLTList(ios *ioStreams) *cobra.Command {
	var (
		df  dltFlags
		by  string
		js  bool
		all bool
	)
	cmd := &cobra.Command{
		Use:   "ls <url> <dlt-topic>",
		Short: "Count a DLT's dead letters by error, original topic or group",
		Long: `ls counts the dead letters of a DLT grouped by --by, with the oldest and
newest last failure of each group:

  error        the first line of the error text, with every number shown as
               # (so "charge o-1003: timeout after 5s" and "charge o-1006:
               timeout after 5s" count together); the default
  error-exact  the first line of the error text as it is
  topic        the original topic
  group        the consumer group that gave up

See 'ferry dlt --help' for what the messages of a DLT are on each broker.`,
		Example: `  ferry dlt ls kafka://127.0.0.1:9092 orders.DLT
  ferry dlt ls amqp://guest:guest@127.0.0.1:5672/ orders.DLT --group ops --by topic --json`,
		Args: exactArgs("url", "dlt-topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if by != "error" && by != "error-exact" && by != "topic" && by != "group" {
				return usagef("--by %q: want error, error-exact, topic or group", by)
			}
			b, err := open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			st, err := openDLT(cmd.Context(), b, args[1], df, all)
			if err != nil {
				return err
			}
			defer st.close()
			rows := map[string]*lsRow{}
			err = st.scan(cmd.Context(), func(e *dltEntry) error {
				k := groupKey(e, by)
				r := rows[k]
				if r == nil {
					r = &lsRow{key: k}
					rows[k] = r
				}
				r.count++
				if t := e.when(); !t.IsZero() {
					if r.oldest.IsZero() || t.Before(r.oldest) {
						r.oldest = t
					}
					if t.After(r.newest) {
						r.newest = t
					}
				}
				return nil
			}, func() error { return nil })
			if err != nil {
				return err
			}
			sorted := make([]*lsRow, 0, len(rows))
			for _, r := range rows {
				sorted = append(sorted, r)
			}
			sort.Slice(sorted, func(i, j int) bool {
				if sorted[i].count != sorted[j].count {
					return sorted[i].count > sorted[j].count
				}
				return sorted[i].key < sorted[j].key
			})
			out := output{w: ios.out, json: js}
			if js {
				for _, r := range sorted {
					if err := out.line(map[string]any{strings.TrimSuffix(by, "-exact"): r.key, "count": r.count, "oldest": fmtTime(r.oldest), "newest": fmtTime(r.newest)}); err != nil {
						return err
					}
				}
				return nil
			}
			if len(sorted) == 0 {
				_, err := fmt.Fprintf(ios.out, "no dead letters on %s\n", args[1])
				return err
			}
			var tab [][]string
			total := 0
			for _, r := range sorted {
				tab = append(tab, []string{strconv.Itoa(r.count), fmtTime(r.oldest), fmtTime(r.newest), shorten(r.key, 70)})
				total += r.count
			}
			if err := out.table([]string{"COUNT", "OLDEST", "NEWEST", strings.ToUpper(strings.TrimSuffix(by, "-exact"))}, tab); err != nil {
				return err
			}
			_, err = fmt.Fprintf(ios.out, "%d dead letter%s\n", total, plural(total))
			return err
		},
	}
	df.add(cmd)
	cmd.Flags().StringVar(&by, "by", "error", "group by error (the first line of the error text, its numbers shown as #), error-exact, topic (the original topic) or group (the consumer group that gave up)")
	cmd.Flags().BoolVar(&js, "json", false, "one JSON object per group")
	cmd.Flags().BoolVar(&all, "all", false, "Kafka: include the dead letters already replayed or purged")
	return cmd
}

func groupKey(e *dltEntry, by string) string {
	if e.parseErr != nil {
		return "(not a readable dead letter: " + e.parseErr.Error() + ")"
	}
	switch by {
	case "topic":
		return e.info.Topic
	case "group":
		if e.info.Group == "" {
			return "(none)"
		}
		return e.info.Group
	}
	first, _, _ := strings.Cut(e.info.Error, "\n") // a panic's stack follows its first line
	if by == "error" {
		// Numbers (order IDs, offsets, durations) would make one row per
		// message: group on the text around them.
		return digits.ReplaceAllString(first, "#")
	}
	return first
}

var digits = regexp.MustCompile(`[0-9]+`)

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeFormat)
}

func shorten(s string, n int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// --- show

func newDLTShow(ios *ioStreams) *cobra.Command {
	var (
		df dltFlags
		js bool
	)
	cmd := &cobra.Command{
		Use:   "show <url> <dlt-topic> <id>",
		Short: "Show one dead letter with every header decoded",
		Long: `show prints the dead letter with the message ID id: where it is, what its
dead-letter headers say about the original (topic, partition, offset,
group, error, attempts, failure times) and every header, Spring's binary
partition, offset and timestamp headers shown as numbers.`,
		Example: `  ferry dlt show kafka://127.0.0.1:9092 orders.DLT 01JDX3Q4C2M8R7ZK5N0V9YB6TW`,
		Args:    exactArgs("url", "dlt-topic", "id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			st, err := openDLT(cmd.Context(), b, args[1], df, true)
			if err != nil {
				return err
			}
			defer st.close()
			var found *dltEntry
			err = st.scan(cmd.Context(), func(e *dltEntry) error {
				if e.msg.ID == args[2] {
					found = e
					if e.settled == "" {
						return errStop
					}
				}
				return nil
			}, func() error { return nil })
			if err != nil {
				return err
			}
			if found == nil {
				return fmt.Errorf("no dead letter with ID %q on %s", args[2], args[1])
			}
			return showEntry(output{w: ios.out, json: js}, args[1], found)
		},
	}
	df.add(cmd)
	cmd.Flags().BoolVar(&js, "json", false, "one JSON object")
	return cmd
}

// decodeHeader shows a header value, Spring's binary ones as numbers.
func decodeHeader(k, v string) string {
	switch k {
	case retry.HeaderSpringOriginalPartition:
		if len(v) == 4 {
			return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32([]byte(v)))), 10)
		}
	case retry.HeaderSpringOriginalOffset:
		if len(v) == 8 {
			return strconv.FormatInt(int64(binary.BigEndian.Uint64([]byte(v))), 10)
		}
	case retry.HeaderSpringOriginalTimestamp:
		if len(v) == 8 {
			ms := int64(binary.BigEndian.Uint64([]byte(v)))
			return fmt.Sprintf("%d (%s)", ms, time.UnixMilli(ms).UTC().Format(timeFormat))
		}
	}
	return printable(v)
}

func showEntry(out output, dlt string, e *dltEntry) error {
	m, in := e.msg, e.info
	hdrs := map[string]string{}
	for k, v := range m.Headers {
		hdrs[k] = decodeHeader(k, v)
	}
	if out.json {
		v := viewOf(m)
		v.Headers = hdrs
		orig := map[string]any{"topic": in.Topic, "group": in.Group, "error": in.Error, "error_type": in.ErrorType,
			"attempts": in.Attempts, "first_failure": fmtTime(in.FirstFailure), "last_failure": fmtTime(in.LastFailure), "spring": in.Spring}
		if in.Partition >= 0 {
			orig["partition"] = in.Partition
		}
		if in.Offset >= 0 {
			orig["offset"] = in.Offset
		}
		if !in.OriginalTime.IsZero() {
			orig["time"] = fmtTime(in.OriginalTime)
		}
		obj := map[string]any{"message": v, "dlt": dlt, "where": e.where, "original": orig}
		if e.parseErr != nil {
			obj["header_error"] = e.parseErr.Error()
		}
		if e.settled != "" {
			obj["settled"] = e.settled
		}
		return out.line(obj)
	}
	var rows [][]string
	add := func(k, v string) { rows = append(rows, []string{k + ":", v}) }
	add("id", m.ID)
	add("key", m.Key)
	add("time", fmtTime(m.Time))
	add("dlt", dlt+", "+e.where)
	if e.settled != "" {
		add("settled", e.settled+" (recorded in "+dlt+".ferry-settled)")
	}
	if e.parseErr != nil {
		add("header error", e.parseErr.Error())
	} else {
		pos := in.Topic
		if in.Partition >= 0 {
			pos += fmt.Sprintf(", partition %d", in.Partition)
		}
		if in.Offset >= 0 {
			pos += fmt.Sprintf(", offset %d", in.Offset)
		}
		add("original", pos)
		if in.Group != "" {
			add("group", in.Group)
		}
		first, _, _ := strings.Cut(in.Error, "\n")
		add("error", first)
		add("error type", in.ErrorType)
		if in.Attempts > 0 {
			add("attempts", strconv.Itoa(in.Attempts))
		}
		add("first failure", fmtTime(in.FirstFailure))
		add("last failure", fmtTime(in.LastFailure))
		if in.Spring {
			add("headers from", "Spring Kafka (kafka_dlt-*)")
		}
	}
	if err := out.table(nil, rows); err != nil {
		return err
	}
	fmt.Fprintln(out.w, "headers:")
	var hr [][]string
	for _, k := range sortedKeys(hdrs) {
		v := hdrs[k]
		if k == retry.HeaderErrorMessage || k == retry.HeaderSpringExceptionMessage || k == retry.HeaderSpringExceptionStacktrace {
			v = shorten(v, 100)
		}
		hr = append(hr, []string{"  " + k, v})
	}
	if err := out.table(nil, hr); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out.w, "payload (%d bytes):\n%s\n", len(m.Payload), payloadText(m.Payload))
	return err
}

// --- replay and purge

type repairFlags struct {
	dltFlags
	filters []string
	limit   int
	batch   int
	rate    float64
	dryRun  bool
	to      string
	yes     bool
	json    bool
}

type repairStats struct {
	Scanned   int  `json:"scanned"`
	Matched   int  `json:"matched"`
	Replayed  int  `json:"replayed,omitempty"`
	Purged    int  `json:"purged,omitempty"`
	Unusable  int  `json:"unreadable,omitempty"`
	DryRun    bool `json:"dry_run,omitempty"`
	Cancelled bool `json:"interrupted,omitempty"`
}

func newDLTReplay(ios *ioStreams) *cobra.Command {
	var f repairFlags
	cmd := &cobra.Command{
		Use:   "replay <url> <dlt-topic>",
		Short: "Republish dead letters to their original topic, filtered",
		Long: `replay republishes the dead letters that match every --filter to their
original topic (from the dead-letter headers) or to --to, keeping their
message IDs, and settles each one on the DLT once its republish was
acknowledged. It shows a progress bar with rate and ETA on a terminal, a
plain progress line per second otherwise, and prints a summary.

Filters (repeat --filter; all must match):
  error=RE   the error text matches the regular expression RE
  key=K      the message key is K
  id=ID      the message ID is ID
  topic=T    the original topic is T
  group=G    the consumer group that gave up is G
  since=T    the last failure is at or after T (RFC 3339, or a duration back from now: 2h)

It is safe to interrupt and rerun: see 'ferry dlt --help'.`,
		Example: `  ferry dlt replay kafka://127.0.0.1:9092 orders.DLT --filter 'error=timeout' --dry-run
  ferry dlt replay kafka://127.0.0.1:9092 orders.DLT --filter 'error=timeout' --filter since=2h --limit 1000
  ferry dlt replay amqp://guest:guest@127.0.0.1:5672/ orders.DLT --group ops --to orders.retry`,
		Args: exactArgs("url", "dlt-topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return repair(cmd, ios, args, f, "replayed")
		},
	}
	f.add(cmd)
	addRepairFlags(cmd, &f)
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "list what would be replayed; change nothing")
	cmd.Flags().StringVar(&f.to, "to", "", "republish to this topic instead of each message's original topic")
	cmd.Flags().Float64Var(&f.rate, "rate", 0, "republish at most this many messages per second (0: no limit)")
	return cmd
}

func newDLTPurge(ios *ioStreams) *cobra.Command {
	var f repairFlags
	cmd := &cobra.Command{
		Use:   "purge <url> <dlt-topic>",
		Short: "Remove dead letters from a DLT, filtered, after confirmation",
		Long: `purge counts the dead letters that match every --filter (the same filters
as replay), asks for confirmation (--yes skips it) and settles them
without republishing: on RabbitMQ they are acknowledged (deleted), on
Kafka recorded as purged in <dlt>.ferry-settled (the records stay in the
log until its retention drops them; ls --all still shows them). It never
purges more than the number it asked about.`,
		Example: `  ferry dlt purge kafka://127.0.0.1:9092 orders.DLT --filter 'error=unknown SKU'
  ferry dlt purge amqp://guest:guest@127.0.0.1:5672/ orders.DLT --group ops --yes`,
		Args: exactArgs("url", "dlt-topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return repair(cmd, ios, args, f, "purged")
		},
	}
	f.add(cmd)
	addRepairFlags(cmd, &f)
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func addRepairFlags(cmd *cobra.Command, f *repairFlags) {
	cmd.Flags().StringArrayVar(&f.filters, "filter", nil, "error=RE, key=K, id=ID, topic=T, group=G or since=TIME (repeat: all must match)")
	cmd.Flags().IntVar(&f.limit, "limit", 0, "handle at most this many matching dead letters (0: all)")
	cmd.Flags().IntVar(&f.batch, "batch", 100, "dead letters republished (or purged) and then settled together")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the summary (and, with --dry-run, each message) as JSON objects")
}

func repair(cmd *cobra.Command, ios *ioStreams, args []string, f repairFlags, action string) error {
	flt, err := parseFilters(f.filters)
	if err != nil {
		return err
	}
	if f.limit < 0 || f.batch < 1 || f.rate < 0 {
		return usagef("--limit must be 0 or more, --batch at least 1, --rate 0 or more")
	}
	ctx := cmd.Context()
	b, err := open(ctx, args[0])
	if err != nil {
		return err
	}
	defer b.Close()
	dlt := args[1]
	st, err := openDLT(ctx, b, dlt, f.dltFlags, false)
	if err != nil {
		return err
	}
	defer st.close()
	out := output{w: ios.out, json: f.json}

	if action == "purged" && !f.yes {
		// Count first, then ask; purge at most that many.
		n := 0
		err := st.scan(ctx, func(e *dltEntry) error {
			if flt.match(e) {
				n++
				if f.limit > 0 && n >= f.limit {
					return errStop
				}
			}
			return nil
		}, func() error { return nil })
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(ios.out, "no matching dead letters on %s\n", dlt)
			return nil
		}
		fmt.Fprintf(ios.err, "purge %d dead letters from %s%s? [y/N] ", n, dlt, filterText(flt))
		answer, _ := bufio.NewReader(ios.in).ReadString('\n')
		if f, ok := ios.in.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
			fmt.Fprintln(ios.err) // the answer did not echo a newline
		}
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fmt.Errorf("purge not confirmed; nothing purged")
		}
		f.limit = n
		if st, err = reopen(ctx, st, b, dlt, f.dltFlags); err != nil {
			return err
		}
		defer st.close()
	}

	var (
		stats   = repairStats{DryRun: f.dryRun}
		pending []*dltEntry
		start   = time.Now()
		prog    = newProgress(ios, st.total(), action)
		failed  error
	)
	settleCtx := context.WithoutCancel(ctx) // an interrupt must not lose the record of what was done
	flush := func() error {
		if len(pending) == 0 || failed != nil {
			return failed
		}
		batch := pending
		pending = nil
		if action == "replayed" {
			if err := republish(ctx, b, batch, f.to); err != nil {
				failed = err
				return err
			}
		}
		sctx, cancel := context.WithTimeout(settleCtx, 30*time.Second)
		err := st.settle(sctx, batch, action)
		cancel()
		if err != nil {
			failed = fmt.Errorf("%d dead letters were %s but could not be settled (a rerun %s them again): %w", len(batch), action, strings.TrimSuffix(action, "d"), err)
			return failed
		}
		if action == "replayed" {
			stats.Replayed += len(batch)
		} else {
			stats.Purged += len(batch)
		}
		prog.done(stats.Replayed + stats.Purged)
		return nil
	}
	err = st.scan(ctx, func(e *dltEntry) error {
		stats.Scanned++
		prog.scanned(stats.Scanned)
		if !flt.match(e) {
			return nil
		}
		if e.parseErr != nil && action == "replayed" && f.to == "" {
			stats.Unusable++
			fmt.Fprintf(ios.err, "ferry: skipping %s (%s): %v\n", e.msg.ID, e.where, e.parseErr)
			return nil
		}
		if f.limit > 0 && stats.Matched >= f.limit {
			return errStop
		}
		stats.Matched++
		if f.dryRun {
			target := e.info.Topic
			if f.to != "" {
				target = f.to
			}
			if f.json {
				return out.line(map[string]string{"id": e.msg.ID, "key": e.msg.Key, "where": e.where, "to": target, "error": e.info.Error})
			}
			_, err := fmt.Fprintf(ios.out, "would replay %s (%s) to %s: %s\n", e.msg.ID, e.where, target, shorten(e.info.Error, 80))
			return err
		}
		pending = append(pending, e)
		if len(pending) >= f.batch {
			if err := flush(); err != nil {
				return err
			}
		}
		if f.rate > 0 {
			// Pace the republishing: this is an operator's tool, not a test.
			due := start.Add(time.Duration(float64(stats.Matched) / f.rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}, flush)
	prog.finish()
	switch {
	case ctx.Err() != nil:
		// Interrupted: whatever failed on the way out failed because of it.
		stats.Cancelled = true
		err = fmt.Errorf("interrupted after %d dead letters %s (%d matched of %d scanned); rerun the same command to go on", stats.Replayed+stats.Purged, action, stats.Matched, stats.Scanned)
	case err != nil && failed != nil && !errors.Is(err, failed):
		err = failed
	}
	if f.json {
		if jerr := out.line(stats); jerr != nil && err == nil {
			err = jerr
		}
	} else if err == nil {
		switch {
		case f.dryRun:
			fmt.Fprintf(ios.out, "dry run: %d of %d dead letters on %s would be replayed%s\n", stats.Matched, stats.Scanned, dlt, filterText(flt))
		case action == "replayed":
			fmt.Fprintf(ios.out, "replayed %d of %d dead letters on %s%s, in %s\n", stats.Replayed, stats.Scanned, dlt, filterText(flt), time.Since(start).Round(time.Millisecond))
		default:
			fmt.Fprintf(ios.out, "purged %d of %d dead letters on %s%s\n", stats.Purged, stats.Scanned, dlt, filterText(flt))
		}
		if stats.Unusable > 0 {
			fmt.Fprintf(ios.out, "%d matching messages have unreadable dead-letter headers and were left (use --to to replay them)\n", stats.Unusable)
		}
	}
	return err
}

// reopen closes st and opens the DLT again, for a second pass.
func reopen(ctx context.Context, st dltStore, b *broker, dlt string, f dltFlags) (dltStore, error) {
	if err := st.close(); err != nil {
		return nil, err
	}
	return openDLT(ctx, b, dlt, f, false)
}

func filterText(f filter) string {
	if len(f.description) == 0 {
		return ""
	}
	return " matching " + strings.Join(f.description, ", ")
}

// republish publishes the batch to each message's original topic (or
// to), in order, each run of one topic in one Publish call, with the
// dead-letter headers stripped and ID, key, time and payload kept.
func republish(ctx context.Context, b *broker, batch []*dltEntry, to string) error {
	for i := 0; i < len(batch); {
		topic := to
		if topic == "" {
			topic = batch[i].info.Topic
		}
		var run []*message.Message
		j := i
		for ; j < len(batch) && (to != "" || batch[j].info.Topic == topic); j++ {
			c := batch[j].msg.Clone()
			c.Delivery = message.Delivery{}
			retry.StripHeaders(c.Headers)
			run = append(run, c)
		}
		if err := b.Publisher().Publish(ctx, topic, run...); err != nil {
			return fmt.Errorf("republish %d dead letters to %s: %w (they stay on the DLT)", len(run), topic, err)
		}
		i = j
	}
	return nil
}

// progress shows the scan's progress: a bar on a terminal, a line per
// second otherwise.
type progress struct {
	bar      *progressbar.ProgressBar
	ios      *ioStreams
	action   string
	total    int64
	n, nDone int
	last     time.Time
	start    time.Time
}

func newProgress(ios *ioStreams, total int64, action string) *progress {
	p := &progress{ios: ios, action: action, total: total, start: time.Now(), last: time.Now()}
	if f, ok := ios.err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(f),
			progressbar.OptionSetDescription("scanning"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("msg"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	return p
}

func (p *progress) scanned(n int) {
	p.n = n
	if p.bar != nil {
		_ = p.bar.Set(n)
		return
	}
	if time.Since(p.last) >= time.Second {
		p.last = time.Now()
		p.line()
	}
}

func (p *progress) done(n int) {
	p.nDone = n
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%s %d", p.action, n))
	}
}

func (p *progress) line() {
	rate := float64(p.n) / time.Since(p.start).Seconds()
	fmt.Fprintf(p.ios.err, "ferry: scanned %d/%d, %s %d (%.0f msg/s)\n", p.n, p.total, p.action, p.nDone, rate)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
