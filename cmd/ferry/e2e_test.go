package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/connect"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// bin is the ferry binary the tests run, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "ferry-cli-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// ferry runs the binary with args and stdin, as a user would.
func ferry(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run ferry %q: %v", args, err)
	}
	return r
}

// ok runs ferry and fails unless it exits 0.
func ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := ferry(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("ferry %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// checkOneLineError checks the shape of every failure: one line on
// stderr starting with "ferry: " (and the usage hint for exit 2), no
// stack trace, no password.
func checkOneLineError(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstderr: %s", r.code, code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	wantLines := 1
	if code == exitUsage {
		wantLines = 2
	}
	if len(lines) != wantLines || !strings.HasPrefix(lines[0], "ferry: ") {
		t.Errorf("stderr is not one 'ferry: ' error line: %q", r.stderr)
	}
	if !strings.Contains(lines[0], want) {
		t.Errorf("stderr %q does not contain %q", lines[0], want)
	}
	for _, bad := range []string{"goroutine ", "panic", ".go:", "s3cret"} {
		if strings.Contains(r.stdout+r.stderr, bad) {
			t.Errorf("output contains %q:\n%s%s", bad, r.stdout, r.stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"tail", "kafka://127.0.0.1:9092"}, "ferry tail takes 2 arguments, <url> <topic>; got 1"},
		{[]string{"tail", "kafka://127.0.0.1:9092", "t", "--nope"}, "unknown flag: --nope"},
		{[]string{"tail", "kafka://127.0.0.1:9092", "t", "--from", "yesterday"}, `--from "yesterday": want earliest, latest, -N`},
		{[]string{"tail", "kafka://127.0.0.1:9092", "t", "--grep", "("}, "--grep: error parsing regexp"},
		{[]string{"dlt", "ls", "kafka://127.0.0.1:9092", "t", "--by", "colour"}, `--by "colour": want error, error-exact, topic or group`},
		{[]string{"dlt", "replay", "kafka://127.0.0.1:9092", "t", "--filter", "mood=bad"}, `unknown filter "mood"`},
		{[]string{"dlt", "replay", "kafka://127.0.0.1:9092", "t", "--filter", "since=last week"}, "want an RFC 3339 time"},
		{[]string{"dlt", "show", "kafka://127.0.0.1:9092", "t"}, "ferry dlt show takes 3 arguments, <url> <dlt-topic> <id>"},
		{[]string{"publish", "kafka://127.0.0.1:9092", "t", "--header", "novalue"}, `--header "novalue": want name=value`},
		{[]string{"lag", "kafka://127.0.0.1:9092"}, "ferry lag takes <url> <group> [<topic>]; got 1 arguments"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			checkOneLineError(t, ferry(t, "", c.args...), exitUsage, c.want)
		})
	}
	if r := ferry(t, "", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Exit codes:") {
		t.Errorf("--help: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, sub := range [][]string{{"tail"}, {"publish"}, {"dlt", "ls"}, {"dlt", "show"}, {"dlt", "replay"}, {"dlt", "purge"}, {"lag"}, {"topics"}, {"topics", "create"}} {
		r := ferry(t, "", append(sub, "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%s --help: exit %d, no examples:\n%s", sub, r.code, r.stdout)
		}
	}
}

// TestBadURLsAndBrokersDown: clear one-line errors, exit 1, no stack
// trace, no password.
func TestBadURLsAndBrokersDown(t *testing.T) {
	for _, c := range []struct {
		url, want string
	}{
		{"nats://u:s3cret@127.0.0.1:4222", `unknown broker URL scheme "nats" in nats://u:xxxxx@127.0.0.1:4222`},
		{"127.0.0.1:9092", "does not start with a scheme"},
		{"inmem://", "the in-memory broker lives inside one program"},
		{"kafka://127.0.0.1:9092?partitons=3", `unknown parameter "partitons" for kafka://`},
		{"amqp://u:s3c/ret@127.0.0.1:5672/", "a '/' or '?' in its user info"},
		{"kafka://127.0.0.1:1", "cannot reach Kafka at kafka://127.0.0.1:1"},
		{"amqp://guest:s3cret@127.0.0.1:1/", "cannot reach RabbitMQ: amqp: dial amqp://guest:xxxxx@127.0.0.1:1/"},
	} {
		for _, args := range [][]string{{"tail", c.url, "t"}, {"dlt", "ls", c.url, "t.DLT"}, {"lag", c.url, "g", "t"}} {
			t.Run(args[0]+" "+c.url, func(t *testing.T) {
				checkOneLineError(t, ferry(t, "", args...), exitError, c.want)
			})
		}
	}
}

// --- Kafka

func kafkaURL(t *testing.T) string { return "kafka://" + strings.Join(testenv.NeedKafka(t), ",") }

func uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()) }

func openBroker(t *testing.T, u string) *connect.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := connect.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func deleteTopics(t *testing.T, b *connect.Broker, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(b.KafkaClient()).DeleteTopics(ctx, topics...)
	})
}

// deadLetter builds a dead letter as the retry middleware writes it, in
// ferry's profile or Spring's.
func deadLetter(i int, topic, errText string, spring bool, failed time.Time) *message.Message {
	m := &message.Message{ID: fmt.Sprintf("dl-%05d", i), Key: fmt.Sprintf("k%d", i%7), Payload: fmt.Appendf(nil, `{"n":%d}`, i),
		Time: failed.Add(-time.Minute), Headers: map[string]string{"app": "test"}}
	h := m.Headers
	if spring {
		h[retry.HeaderSpringOriginalTopic] = topic
		h[retry.HeaderSpringOriginalPartition] = string(binary.BigEndian.AppendUint32(nil, uint32(i%3)))
		h[retry.HeaderSpringOriginalOffset] = string(binary.BigEndian.AppendUint64(nil, uint64(1000+i)))
		h[retry.HeaderSpringOriginalTimestamp] = string(binary.BigEndian.AppendUint64(nil, uint64(m.Time.UnixMilli())))
		h[retry.HeaderSpringOriginalConsumerGroup] = "billing"
		h[retry.HeaderSpringExceptionMessage] = errText
		h[retry.HeaderSpringExceptionFQCN] = "java.lang.IllegalStateException"
	} else {
		h[retry.HeaderOriginalTopic] = topic
		h[retry.HeaderOriginalGroup] = "billing"
		h[retry.HeaderErrorMessage] = errText
		h[retry.HeaderErrorType] = "*errors.errorString"
	}
	h[retry.HeaderAttempts] = "3"
	h[retry.HeaderFirstFailure] = failed.Add(-time.Second).UTC().Format(retry.TimeFormat)
	h[retry.HeaderLastFailure] = failed.UTC().Format(retry.TimeFormat)
	return m
}

// kafkaTopics creates the topics (8 partitions) and waits until every
// partition has a leader, so that the first publish to them does not race
// the broker's leader election (slow on a loaded machine).
func kafkaTopics(t *testing.T, b *connect.Broker, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(b.KafkaClient())
	if _, err := adm.CreateTopics(ctx, 8, -1, nil, topics...); err != nil {
		t.Fatal(err)
	}
	for {
		tds, err := adm.ListTopics(ctx, topics...)
		ready := err == nil
		for _, tp := range topics {
			td, ok := tds[tp]
			ready = ready && ok && td.Err == nil && len(td.Partitions) == 8
			for _, p := range td.Partitions {
				ready = ready && p.Err == nil && p.Leader >= 0
			}
		}
		if ready {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topics %v not ready: %v", topics, err)
		}
		time.Sleep(100 * time.Millisecond) // polling an external condition
	}
}

func publishAll(t *testing.T, b *connect.Broker, topic string, msgs []*message.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < len(msgs); i += 1000 {
		if err := b.Publisher().Publish(ctx, topic, msgs[i:min(i+1000, len(msgs))]...); err != nil {
			t.Fatal(err)
		}
	}
}

// kafkaIDs reads topic from start to end and counts the ferry-id values.
func kafkaIDs(t *testing.T, b *connect.Broker, topic string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(b.KafkaClient())
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	ids := map[string]int{}
	if len(left) == 0 {
		return ids
	}
	cl, err := kgo.NewClient(append(openBroker(t, kafkaURL(t)).KafkaClientOptions(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (partitions left %v)", topic, ctx.Err(), left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "ferry-id" {
					ids[string(h.Value)]++
				}
			}
			if r.Offset >= left[r.Partition]-1 {
				delete(left, r.Partition)
			}
		})
	}
	return ids
}

// golden compares got with testdata/name, after masking what changes
// from run to run.
func golden(t *testing.T, name, got string, masks map[string]string) {
	t.Helper()
	for from, to := range masks {
		got = strings.ReplaceAll(got, from, to)
	}
	got = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`).ReplaceAllString(got, "<time>")
	got = regexp.MustCompile(`\d{13} \(<time>\)`).ReplaceAllString(got, "<ms> (<time>)")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestKafkaTopicsPublishTailLag(t *testing.T) {
	u := kafkaURL(t)
	b := openBroker(t, u)
	topic := uniq("cli-tail")
	deleteTopics(t, b, topic)
	if out := ok(t, "", "topics", "create", u, topic, "--partitions", "3"); !strings.Contains(out, "created topic "+topic+" with 3 partitions") {
		t.Errorf("create: %q", out)
	}
	checkOneLineError(t, ferry(t, "", "topics", "create", u, topic), exitError, "exists")
	found := false
	for _, l := range strings.Split(ok(t, "", "topics", u, "--json"), "\n") {
		found = found || l == fmt.Sprintf(`{"partitions":3,"replication":1,"topic":%q}`, topic)
	}
	if !found {
		t.Errorf("topics --json does not list %s with 3 partitions", topic)
	}

	ids := strings.Fields(ok(t, "o-1\no-2\no-3\n", "publish", u, topic, "--key", "alice", "--header", "source=cli"))
	if len(ids) != 3 {
		t.Fatalf("publish printed %q, want 3 IDs", ids)
	}

	// A group that consumed everything and committed.
	sub, err := b.NewSubscriber(connect.WithGroup("cli-billing"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	n := 0
	_ = sub.Subscribe(ctx, topic, func(context.Context, *message.Message) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	cancel()
	adm := kadm.NewClient(b.KafkaClient())
	before, err := adm.FetchOffsets(context.Background(), "cli-billing")
	if err != nil || before.Error() != nil {
		t.Fatal(err, before.Error())
	}
	groupsBefore, err := adm.ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	out := ok(t, "", "tail", u, topic, "--from", "earliest", "--max", "3", "--json")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v msgView
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("tail --json line %q: %v", l, err)
		}
		if v.Key != "alice" || v.Headers["source"] != "cli" || v.Topic != topic || v.Payload == nil {
			t.Errorf("tail line %q", l)
			continue
		}
		got = append(got, v.ID+"="+*v.Payload)
	}
	want := []string{ids[0] + "=o-1", ids[1] + "=o-2", ids[2] + "=o-3"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tail: %q, want %q", got, want)
	}
	if out := ok(t, "", "tail", u, topic, "--from", "-1", "--max", "1", "--grep", "o-3"); !strings.Contains(out, "id="+ids[2]+"  key=alice  source=cli  o-3") {
		t.Errorf("tail --from -1: %q", out)
	}
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if out := ok(t, "", "tail", u, topic, "--from", past, "--max", "3"); strings.Count(out, "key=alice") != 3 {
		t.Errorf("tail --from %s: %q, want the 3 messages", past, out)
	}

	// tail moved no group's offsets and joined no group.
	after, err := adm.FetchOffsets(context.Background(), "cli-billing")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(offsetsOf(before)) != fmt.Sprint(offsetsOf(after)) {
		t.Errorf("group offsets moved: before %v, after %v", offsetsOf(before), offsetsOf(after))
	}
	groupsAfter, err := adm.ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groupsAfter.Groups() {
		if _, ok := groupsBefore[g]; !ok && strings.Contains(g, "ferry") {
			t.Errorf("a new group %q appeared while tail ran", g)
		}
	}

	out = ok(t, "", "lag", u, "cli-billing", topic)
	if !strings.Contains(out, "group cli-billing (Empty): total lag 0") {
		t.Errorf("lag: %q", out)
	}
	// --raw: the whole input is one message; --key filters.
	rawID := strings.TrimSpace(ok(t, "line 1\nline 2\n", "publish", u, topic, "--raw", "--key", "bob"))
	out = ok(t, "", "tail", u, topic, "--from", "earliest", "--key", "bob", "--max", "1", "--json")
	var raw msgView
	if err := json.Unmarshal([]byte(out), &raw); err != nil || raw.ID != rawID || raw.Payload == nil || *raw.Payload != "line 1\nline 2\n" {
		t.Errorf("tail of the --raw message: %q (%v), want ID %s and both lines", out, err, rawID)
	}
	checkOneLineError(t, ferry(t, "", "lag", u, uniq("no-such-group")), exitError, "not found")
	checkOneLineError(t, ferry(t, "", "tail", u, uniq("no-such-topic")), exitError, "not found")
	checkOneLineError(t, ferry(t, "", "dlt", "ls", u, uniq("no-such-topic")), exitError, "not found")
}

func offsetsOf(r kadm.OffsetResponses) map[string]int64 {
	m := map[string]int64{}
	r.Each(func(o kadm.OffsetResponse) { m[fmt.Sprint(o.Topic, "/", o.Partition)] = o.At })
	return m
}

func TestKafkaDLTListShow(t *testing.T) {
	u := kafkaURL(t)
	b := openBroker(t, u)
	topic := uniq("cli-show")
	dlt := topic + ".DLT"
	deleteTopics(t, b, topic, dlt, dlt+ledgerSuffix)
	kafkaTopics(t, b, topic, dlt)
	failed := time.Now().Add(-time.Hour).Truncate(time.Second)
	var msgs []*message.Message
	for i := range 6 {
		e := "timeout calling the card processor"
		if i%3 == 0 {
			e = `unknown SKU "LAMP-RETRO"`
		}
		msgs = append(msgs, deadLetter(i, topic, e, i%2 == 1, failed.Add(time.Duration(i)*time.Second)))
	}
	publishAll(t, b, dlt, msgs)
	masks := map[string]string{topic: "<topic>"}
	golden(t, "kafka-dlt-ls.golden", ok(t, "", "dlt", "ls", u, dlt), masks)
	golden(t, "kafka-dlt-ls-by-topic.json.golden", ok(t, "", "dlt", "ls", u, dlt, "--by", "topic", "--json"), masks)
	golden(t, "kafka-dlt-show-spring.golden", ok(t, "", "dlt", "show", u, dlt, "dl-00001"), masks)
	golden(t, "kafka-dlt-show-ferry.golden", ok(t, "", "dlt", "show", u, dlt, "dl-00000"), masks)
	checkOneLineError(t, ferry(t, "", "dlt", "show", u, dlt, "nope"), exitError, `no dead letter with ID "nope"`)

	// Each filter, --limit and --dry-run (which changes nothing).
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--filter", "key=k1"}, []string{"dl-00001"}},
		{[]string{"--filter", "id=dl-00004"}, []string{"dl-00004"}},
		{[]string{"--filter", "error=SKU"}, []string{"dl-00000", "dl-00003"}},
		{[]string{"--filter", "error=timeout", "--filter", "key=k2"}, []string{"dl-00002"}},
		{[]string{"--filter", "topic=" + topic, "--filter", "group=billing", "--limit", "6"}, []string{"dl-00000", "dl-00001", "dl-00002", "dl-00003", "dl-00004", "dl-00005"}},
		{[]string{"--filter", "since=" + failed.Add(4*time.Second).Format(time.RFC3339)}, []string{"dl-00004", "dl-00005"}},
		{[]string{"--filter", "topic=elsewhere"}, nil},
	} {
		out := ok(t, "", append([]string{"dlt", "replay", u, dlt, "--dry-run", "--json"}, c.args...)...)
		var ids []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("%s: line %q: %v", c.args, l, err)
			}
			if id, ok := v["id"].(string); ok {
				ids = append(ids, id)
				if v["to"] != topic {
					t.Errorf("%s: %s would go to %v, want %s", c.args, id, v["to"], topic)
				}
			} else if v["matched"] != float64(len(c.want)) || v["dry_run"] != true {
				t.Errorf("%s: summary %q, want %d matched", c.args, l, len(c.want))
			}
		}
		sort.Strings(ids) // partitions are read in no fixed order
		if strings.Join(ids, " ") != strings.Join(c.want, " ") {
			t.Errorf("replay --dry-run %s: %v, want %v", c.args, ids, c.want)
		}
	}
	out := ok(t, "", "dlt", "replay", u, dlt, "--dry-run", "--limit", "2")
	if n := strings.Count(out, "would replay dl-0000"); n != 2 || !strings.Contains(out, "dry run: 2 of ") {
		t.Errorf("--limit 2: %q", out)
	}
	if ids := kafkaIDs(t, b, topic); len(ids) != 0 {
		t.Errorf("--dry-run republished %v", ids)
	}

	// purge asks, and refuses without a yes.
	r := ferry(t, "n\n", "dlt", "purge", u, dlt, "--filter", "error=SKU")
	prompt, rest, _ := strings.Cut(r.stderr, "\n")
	if want := "purge 2 dead letters from " + dlt + " matching error=SKU? [y/N] "; prompt != want {
		t.Errorf("prompt %q, want %q", prompt, want)
	}
	r.stderr = rest
	checkOneLineError(t, r, exitError, "purge not confirmed; nothing purged")
	out = ok(t, "y\n", "dlt", "purge", u, dlt, "--filter", "error=SKU")
	if !strings.Contains(out, "purged 2 of 6 dead letters") {
		t.Errorf("purge: %q", out)
	}
	if out := ok(t, "", "dlt", "ls", u, dlt); !strings.Contains(out, "4 dead letters") || strings.Contains(out, "SKU") {
		t.Errorf("ls after purge: %q", out)
	}
	if out := ok(t, "", "dlt", "ls", u, dlt, "--all"); !strings.Contains(out, "6 dead letters") {
		t.Errorf("ls --all after purge: %q", out)
	}
}

// TestKafkaReplay: a filtered replay of 10,000 dead letters republishes
// exactly the matching ones, with their IDs; a rerun replays nothing;
// an interrupted replay rerun completes with at most one batch of
// duplicates.
func TestKafkaReplay(t *testing.T) {
	u := kafkaURL(t)
	b := openBroker(t, u)
	topic := uniq("cli-replay")
	dlt := topic + ".DLT"
	to := topic + "-2"
	deleteTopics(t, b, topic, dlt, dlt+ledgerSuffix, to)
	kafkaTopics(t, b, topic, dlt, to)
	const total = 10000
	failed := time.Now().Add(-time.Hour)
	var msgs []*message.Message
	want := map[string]bool{}
	for i := range total {
		e := "unknown SKU"
		if i%3 == 0 {
			e = "timeout after 5s"
			want[fmt.Sprintf("dl-%05d", i)] = true
		}
		msgs = append(msgs, deadLetter(i, topic, e, i%2 == 0, failed))
	}
	publishAll(t, b, dlt, msgs)

	out := ok(t, "", "dlt", "replay", u, dlt, "--filter", "error=^timeout", "--batch", "500")
	if !strings.Contains(out, fmt.Sprintf("replayed %d of %d dead letters on %s matching error=^timeout", len(want), total, dlt)) {
		t.Errorf("replay: %q", out)
	}
	checkReplayed(t, kafkaIDs(t, b, topic), want, 0)
	if out := ok(t, "", "dlt", "replay", u, dlt, "--filter", "error=^timeout"); !strings.Contains(out, "replayed 0 of 6666") {
		t.Errorf("rerun: %q", out)
	}
	checkReplayed(t, kafkaIDs(t, b, topic), want, 0)

	// On a terminal: a progress bar with the rate and the time left
	// (script(1) gives the command a pseudo-terminal).
	cmdline := strings.Join([]string{bin, "dlt", "replay", u, dlt, "--filter", "id=none", "--dry-run"}, " ")
	tty, err := exec.Command("script", "-qec", cmdline, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("script -c %q: %v\n%s", cmdline, err, tty)
	}
	bar := regexp.MustCompile(`scanning +\d+% \|[^|]*\| \(\d+/6666, \d+ msg/s\) \[\d+s:\d+s\]`)
	if !bar.Match(tty) || !strings.Contains(string(tty), "dry run: 0 of 6666") {
		t.Errorf("no progress bar with rate and ETA on a terminal:\n%q", tty)
	}

	// Interrupted: the rest (the 6666 "unknown SKU") to another topic,
	// paced so that the interrupt lands in the middle.
	rest := map[string]bool{}
	for i := range total {
		if id := fmt.Sprintf("dl-%05d", i); !want[id] {
			rest[id] = true
		}
	}
	const batch = 100
	interruptReplay(t, "dlt", "replay", u, dlt, "--to", to, "--rate", "4000", "--batch", fmt.Sprint(batch))
	out = ok(t, "", "dlt", "replay", u, dlt, "--to", to, "--batch", fmt.Sprint(batch))
	if !strings.Contains(out, "replayed ") {
		t.Errorf("rerun after interrupt: %q", out)
	}
	checkReplayed(t, kafkaIDs(t, b, to), rest, batch)
	if out := ok(t, "", "dlt", "ls", u, dlt); !strings.Contains(out, "no dead letters") {
		t.Errorf("ls after replaying all: %q", out)
	}
}

// interruptReplay starts a replay, sends SIGINT once it reported
// progress, and checks it stops with exit 1 and says so.
func interruptReplay(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	progress := regexp.MustCompile(`scanned \d+/\d+, replayed ([1-9]\d*)`)
	sc := bufio.NewScanner(stderr)
	var lines []string
	signalled := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !signalled && progress.MatchString(sc.Text()) {
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !signalled || !errors.As(err, &ee) || ee.ExitCode() != exitError {
		t.Fatalf("interrupted replay: signalled %v, exit %v\nstderr:\n%s\nstdout:\n%s", signalled, err, strings.Join(lines, "\n"), stdout.String())
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "interrupted after") || !strings.Contains(last, "rerun the same command to go on") {
		t.Errorf("last stderr line %q", last)
	}
}

// checkReplayed: every wanted ID arrived, nothing else, and at most dups
// of them twice (never more).
func checkReplayed(t *testing.T, got map[string]int, want map[string]bool, dups int) {
	t.Helper()
	twice := 0
	for id, n := range got {
		switch {
		case !want[id]:
			t.Errorf("replayed %s, which does not match", id)
		case n > 2:
			t.Errorf("%s replayed %d times", id, n)
		case n == 2:
			twice++
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("%s not replayed", id)
			break
		}
	}
	if twice > dups {
		t.Errorf("%d messages replayed twice, want at most %d", twice, dups)
	}
	t.Logf("%d replayed, %d of them twice", len(got), twice)
}

// --- RabbitMQ

func amqpURL(t *testing.T) string { return testenv.NeedAMQP(t) }

// depthOf waits until the ready messages of queues add up to want
// (RabbitMQ requeues a closed channel's deliveries asynchronously), and
// returns the last sum seen.
func depthOf(t *testing.T, b *connect.Broker, want int, queues ...string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n := 0
		for _, q := range queues {
			n += queueDepth(t, b, q)
		}
		if n == want || time.Now().After(deadline) {
			if n != want {
				out, _ := exec.Command("rabbitmqctl", "-n", "rabbit@localhost", "list_queues", "name", "messages_ready", "messages_unacknowledged", "consumers").CombinedOutput()
				t.Logf("queues:\n%s", out)
			}
			return n
		}
		time.Sleep(50 * time.Millisecond) // polling an external condition
	}
}

// queueDepth is the number of ready messages of queue.
func queueDepth(t *testing.T, b *connect.Broker, queue string) int {
	t.Helper()
	conn, err := dialAMQP(&broker{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func TestAMQPEndToEnd(t *testing.T) {
	u := amqpURL(t)
	b := openBroker(t, u+sepFor(u)+"shards=2")
	topic := uniq("cli-amqp")
	dlt := topic + ".DLT"
	ctx := context.Background()
	if err := b.Declare(ctx, topic, "svc"); err != nil {
		t.Fatal(err)
	}
	if err := b.Declare(ctx, dlt, "ops"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAMQP(t, b, topic, dlt) })

	// tail: a temporary queue; the group's queues keep their messages.
	cmd := exec.Command(bin, "tail", u, topic, "--max", "2")
	stderr, _ := cmd.StderrPipe()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "through temporary queue amq.gen-") {
		t.Fatalf("tail's first stderr line: %q", sc.Text())
	}
	ids := strings.Fields(ok(t, "hello\nworld\n", "publish", u, topic, "--key", "bob"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail: %v, stdout %q", err, stdout.String())
	}
	for i, w := range []string{"hello", "world"} {
		if !strings.Contains(stdout.String(), "id="+ids[i]+"  key=bob  "+w) {
			t.Errorf("tail output %q lacks %s", stdout.String(), w)
		}
	}
	if n := depthOf(t, b, 2, topic+".svc.0", topic+".svc.1"); n != 2 {
		t.Errorf("the group's queues hold %d messages after tail, want 2", n)
	}
	if out := ok(t, "", "lag", u, "svc", topic); !strings.Contains(out, "total 2 messages in 2 queues") {
		t.Errorf("lag: %q", out)
	}
	checkOneLineError(t, ferry(t, "", "lag", u, "svc"), exitUsage, "on RabbitMQ, lag needs the topic")
	checkOneLineError(t, ferry(t, "", "tail", u, uniq("no-such-topic")), exitError, "not found: RabbitMQ has no exchange of that name")
	checkOneLineError(t, ferry(t, "", "dlt", "ls", u, dlt, "--group", "nobody"), exitError, `group "nobody" has no queues`)
	created := uniq("cli-created")
	if out := ok(t, "", "topics", "create", u, created); !strings.Contains(out, "created topic "+created+" (a durable topic exchange)") {
		t.Errorf("topics create: %q", out)
	}
	t.Cleanup(func() { deleteAMQP(t, b, created) })
	checkOneLineError(t, ferry(t, "", "topics", "create", u, created), exitError, "exists")
	checkOneLineError(t, ferry(t, "", "topics", "create", u, uniq("x"), "--partitions", "3"), exitUsage, "RabbitMQ has no partitions")
	checkOneLineError(t, ferry(t, "", "topics", u), exitError, "listing topics needs Kafka")

	// purge --yes removes exactly the matching dead letters.
	var poison []*message.Message
	for i := range 10 {
		poison = append(poison, deadLetter(90000+i, topic, "poison pill", false, time.Now()))
	}
	publishAll(t, b, dlt, poison)
	publishAll(t, b, dlt, []*message.Message{deadLetter(99999, topic, "keep me", false, time.Now())})
	if out := ok(t, "", "dlt", "purge", u, dlt, "--group", "ops", "--filter", "error=poison", "--yes"); !strings.Contains(out, "purged 10 of 11 dead letters") {
		t.Errorf("purge: %q", out)
	}
	out := ok(t, "", "dlt", "ls", u, dlt, "--group", "ops", "--json")
	var row struct {
		Count int    `json:"count"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &row); err != nil || row.Count != 1 || row.Error != "keep me" {
		t.Errorf("ls after purge: %q, want only the kept one", out)
	}
	ok(t, "y\n", "dlt", "purge", u, dlt, "--group", "ops")
	if n := depthOf(t, b, 0, dlt+".ops.0", dlt+".ops.1"); n != 0 {
		t.Fatalf("%d dead letters left after purging all", n)
	}

	// A filtered replay of 10,000 dead letters.
	const total = 10000
	failed := time.Now().Add(-time.Hour).Truncate(time.Second)
	want := map[string]bool{}
	var msgs []*message.Message
	for i := range total {
		e := "unknown SKU"
		if i%4 == 0 {
			e = "timeout after 5s"
			want[fmt.Sprintf("dl-%05d", i)] = true
		}
		msgs = append(msgs, deadLetter(i, topic, e, i%2 == 1, failed))
	}
	publishAll(t, b, dlt, msgs)
	golden(t, "amqp-dlt-ls.golden", ok(t, "", "dlt", "ls", u, dlt, "--group", "ops"), map[string]string{topic: "<topic>"})
	golden(t, "amqp-dlt-show-spring.golden", ok(t, "", "dlt", "show", u, dlt, "dl-00001", "--group", "ops"), map[string]string{topic: "<topic>"})
	if n := depthOf(t, b, total, dlt+".ops.0", dlt+".ops.1"); n != total {
		t.Fatalf("the DLT queues hold %d after ls and show, want %d", n, total)
	}
	out = ok(t, "", "dlt", "replay", u, dlt, "--group", "ops", "--filter", "error=timeout", "--batch", "250")
	if !strings.Contains(out, fmt.Sprintf("replayed %d of %d dead letters", len(want), total)) {
		t.Errorf("replay: %q", out)
	}
	if n := depthOf(t, b, total-len(want), dlt+".ops.0", dlt+".ops.1"); n != total-len(want) {
		t.Errorf("the DLT queues hold %d after the replay, want %d", n, total-len(want))
	}
	got := consumeIDs(t, b, topic, "svc", 2+len(want))
	delete(got, ids[0])
	delete(got, ids[1])
	checkReplayed(t, got, want, 0)

	// Interrupted and rerun: the rest to another topic.
	to := topic + "-2"
	if err := b.Declare(ctx, to, "svc"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAMQP(t, b, to) })
	rest := map[string]bool{}
	for i := range total {
		if id := fmt.Sprintf("dl-%05d", i); !want[id] {
			rest[id] = true
		}
	}
	interruptReplay(t, "dlt", "replay", u, dlt, "--group", "ops", "--to", to, "--rate", "3000", "--batch", "100")
	ok(t, "", "dlt", "replay", u, dlt, "--group", "ops", "--to", to, "--batch", "100")
	if n := depthOf(t, b, 0, dlt+".ops.0", dlt+".ops.1"); n != 0 {
		t.Errorf("the DLT queues hold %d after replaying all, want 0", n)
	}
	n := depthOf(t, b, len(rest), to+".svc.0", to+".svc.1")
	if n < len(rest) || n > len(rest)+100 {
		t.Fatalf("%s's queues hold %d, want %d plus at most 100 duplicates", to, n, len(rest))
	}
	checkReplayed(t, consumeIDs(t, b, to, "svc", n), rest, 100)
}

func sepFor(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// consumeIDs consumes n messages of topic in group and counts their IDs.
func consumeIDs(t *testing.T, b *connect.Broker, topic, group string, n int) map[string]int {
	t.Helper()
	sub, err := b.NewSubscriber(connect.WithGroup(group), connect.WithConcurrency(8))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	ids := map[string]int{}
	seen := 0
	err = sub.Subscribe(ctx, topic, func(_ context.Context, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		ids[m.ID]++
		if seen++; seen == n {
			cancel()
		}
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("consumed %d of %d: %v", seen, n, err)
	}
	return ids
}

// deleteAMQP deletes the topics' exchanges and group queues (best effort).
func deleteAMQP(t *testing.T, b *connect.Broker, topics ...string) {
	conn, err := dialAMQP(&broker{Broker: b})
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	for _, tp := range topics {
		for _, g := range []string{"svc", "ops"} {
			base := tp + "." + g
			for i := range 2 {
				_, _ = ch.QueueDelete(fmt.Sprintf("%s.%d", base, i), false, false, false)
			}
			for _, x := range []string{base, base + ".unsharded", base + ".members"} {
				_ = ch.ExchangeDelete(x, false, false)
			}
		}
		_ = ch.ExchangeDelete(tp, false, false)
	}
}
