package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/ferrymsg/ferry/connect"
	"github.com/ferrymsg/ferry/message"
)

// openTimeout bounds connecting to the broker.
const openTimeout = 10 * time.Second

// broker is an opened URL.
type broker struct {
	*connect.Broker
	kafka bool
}

// open opens rawURL for a command; inmem:// is refused (an in-memory
// broker lives in one process, not in a tool's).
func open(ctx context.Context, rawURL string) (*broker, error) {
	if s, _, _ := strings.Cut(rawURL, "://"); strings.EqualFold(s, connect.SchemeInmem) {
		return nil, fmt.Errorf("%s: the in-memory broker lives inside one program; ferry needs kafka:// or amqp://", connect.Redact(rawURL))
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	b, err := connect.Open(octx, rawURL)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errInterrupted
		}
		return nil, err
	}
	return &broker{Broker: b, kafka: b.Scheme() == connect.SchemeKafka}, nil
}

var errInterrupted = errors.New("interrupted")

// output writes tables or JSON lines.
type output struct {
	w    io.Writer
	json bool
}

// line writes v as one JSON object.
func (o output) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.w, "%s\n", b)
	return err
}

// table writes rows under header (none if nil), aligned.
func (o output) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(o.w, 0, 4, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// msgView is the JSON form of a message.
type msgView struct {
	Topic         string            `json:"topic"`
	Partition     *int32            `json:"partition,omitempty"`
	Offset        *int64            `json:"offset,omitempty"`
	ID            string            `json:"id"`
	Key           string            `json:"key,omitempty"`
	Time          string            `json:"time,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	Payload       *string           `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"`
}

func viewOf(m *message.Message) msgView {
	v := msgView{Topic: m.Delivery.Topic, ID: m.ID, Key: m.Key}
	if m.Delivery.Partition >= 0 {
		p := m.Delivery.Partition
		v.Partition = &p
	}
	if m.Delivery.Offset >= 0 {
		o := m.Delivery.Offset
		v.Offset = &o
	}
	if !m.Time.IsZero() {
		v.Time = m.Time.UTC().Format(timeFormat)
	}
	if len(m.Headers) > 0 {
		v.Headers = map[string]string{}
		for k, val := range m.Headers {
			v.Headers[k] = printable(val)
		}
	}
	if utf8.Valid(m.Payload) {
		s := string(m.Payload)
		v.Payload = &s
	} else {
		v.PayloadBase64 = m.Payload
	}
	return v
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// printable shows a header value: as it is when it is UTF-8 text,
// else as hex bytes.
func printable(v string) string {
	if utf8.ValidString(v) && !strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' }) {
		return v
	}
	return fmt.Sprintf("0x%x", v)
}

// payloadText shows a payload on one line: quoted when it is not plain
// one-line UTF-8 text.
func payloadText(p []byte) string {
	s := string(p)
	if utf8.Valid(p) && !strings.ContainsAny(s, "\n\r") {
		return s
	}
	return strconv.Quote(s)
}

// position shows where a message is: partition@offset on Kafka, the
// shard on RabbitMQ.
func position(m *message.Message) string {
	switch {
	case m.Delivery.Offset >= 0:
		return fmt.Sprintf("%d@%d", m.Delivery.Partition, m.Delivery.Offset)
	case m.Delivery.Partition >= 0:
		return fmt.Sprintf("shard %d", m.Delivery.Partition)
	}
	return "-"
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// parseFrom parses --from: earliest, latest, -N or an RFC 3339 time.
type fromSpec struct {
	kind string // "earliest", "latest", "last", "time"
	n    int64
	t    time.Time
}

func parseFrom(s string) (fromSpec, error) {
	switch s {
	case "earliest", "latest":
		return fromSpec{kind: s}, nil
	}
	if strings.HasPrefix(s, "-") {
		n, err := strconv.ParseInt(s[1:], 10, 64)
		if err != nil || n < 1 {
			return fromSpec{}, usagef("--from %q: want earliest, latest, -N (the last N messages of each partition) or an RFC 3339 time", s)
		}
		return fromSpec{kind: "last", n: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fromSpec{}, usagef("--from %q: want earliest, latest, -N (the last N messages of each partition) or an RFC 3339 time such as 2026-12-02T03:00:00Z", s)
	}
	return fromSpec{kind: "time", t: t}, nil
}
