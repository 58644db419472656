package retry_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSpringHeadersByteForByte(t *testing.T) {
	pub := &fakePublisher{}
	h := func(context.Context, *message.Message) error { return errors.New("no such order") }
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(2), retry.WithConstantBackoff(0), retry.SpringHeaders())
	msg := delivered("orders", 1)
	msg.Delivery.Partition = 0x01020304
	msg.Delivery.Offset = 0x0102030405060708
	msg.Time = time.UnixMilli(1700000000123)
	require.NoError(t, deliver(context.Background(), mw(h), msg))
	_, msgs := pub.published()
	require.Len(t, msgs, 1)
	hd := msgs[0].Headers

	assert.Equal(t, "orders", hd["kafka_dlt-original-topic"])
	assert.Equal(t, []byte{1, 2, 3, 4}, []byte(hd["kafka_dlt-original-partition"]))
	assert.Equal(t, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte(hd["kafka_dlt-original-offset"]))
	ts := []byte(hd["kafka_dlt-original-timestamp"])
	require.Len(t, ts, 8)
	assert.EqualValues(t, 1700000000123, int64(binary.BigEndian.Uint64(ts)))
	assert.Equal(t, []byte{0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b}, ts)
	assert.Equal(t, "CreateTime", hd["kafka_dlt-original-timestamp-type"])
	assert.Equal(t, "g", hd["kafka_dlt-original-consumer-group"])
	assert.Equal(t, "no such order", hd["kafka_dlt-exception-message"])
	assert.Equal(t, "*errors.errorString", hd["kafka_dlt-exception-fqcn"])
	assert.Equal(t, "*errors.errorString", hd["kafka_dlt-exception-cause-fqcn"], "an error that wraps nothing is its own root cause")
	assert.Equal(t, "*errors.errorString: no such order\n", hd["kafka_dlt-exception-stacktrace"], "every failure has a trace: its error chain")
	for _, name := range []string{retry.HeaderOriginalTopic, retry.HeaderOriginalPartition, retry.HeaderErrorMessage, retry.HeaderOriginalGroup} {
		_, ok := hd[name]
		assert.False(t, ok, "ferry header %s written in the Spring profile", name)
	}
	assert.Equal(t, "2", hd[retry.HeaderAttempts], "attempts have no Spring header: ferry's is kept")

	info, err := retry.ParseDeadLetter(msgs[0])
	require.NoError(t, err)
	assert.True(t, info.Spring)
	assert.Equal(t, "orders", info.Topic)
	assert.EqualValues(t, 0x01020304, info.Partition)
	assert.EqualValues(t, 0x0102030405060708, info.Offset)
	assert.True(t, info.OriginalTime.Equal(msg.Time), "original time %v", info.OriginalTime)
	assert.Equal(t, "g", info.Group)
	assert.Equal(t, "no such order", info.Error)
	assert.Equal(t, 2, info.Attempts)
}

func TestNoPartitionOrOffsetWhereTheBrokerHasNone(t *testing.T) {
	for _, spring := range []bool{false, true} {
		pub := &fakePublisher{}
		h, _ := counting(0)
		opts := []retry.Option{retry.WithDeadLetter(pub), retry.WithMaxAttempts(1)}
		if spring {
			opts = append(opts, retry.SpringHeaders())
		}
		msg := delivered("orders", 1)
		msg.Delivery.Partition, msg.Delivery.Offset, msg.Delivery.DeliveryTag = -1, -1, 7 // AMQP
		require.NoError(t, deliver(context.Background(), mustNew(t, opts...)(h), msg))
		_, msgs := pub.published()
		for _, name := range []string{retry.HeaderOriginalPartition, retry.HeaderOriginalOffset, retry.HeaderSpringOriginalPartition, retry.HeaderSpringOriginalOffset} {
			_, ok := msgs[0].Headers[name]
			assert.False(t, ok, "spring=%v: %s written", spring, name)
		}
		info, err := retry.ParseDeadLetter(msgs[0])
		require.NoError(t, err)
		assert.EqualValues(t, -1, info.Partition)
		assert.EqualValues(t, -1, info.Offset)
	}
}

func TestParseDeadLetterErrors(t *testing.T) {
	valid := func() map[string]string {
		return map[string]string{
			retry.HeaderOriginalTopic: "orders", retry.HeaderAttempts: "3",
			retry.HeaderFirstFailure: "2025-01-02T03:04:05.006Z", retry.HeaderLastFailure: "2025-01-02T03:04:06.006Z",
		}
	}
	_, err := retry.ParseDeadLetter(&message.Message{Headers: valid()})
	require.NoError(t, err)

	_, err = retry.ParseDeadLetter(&message.Message{Headers: map[string]string{"app": "x"}})
	assert.ErrorIs(t, err, retry.ErrNotDeadLetter)
	_, err = retry.ParseDeadLetter(nil)
	assert.ErrorIs(t, err, retry.ErrNotDeadLetter)

	for _, tc := range []struct {
		name, header, value string
	}{
		{"empty topic", retry.HeaderOriginalTopic, ""},
		{"partition not a number", retry.HeaderOriginalPartition, "two"},
		{"partition negative", retry.HeaderOriginalPartition, "-1"},
		{"partition over int32", retry.HeaderOriginalPartition, "2147483648"},
		{"offset not a number", retry.HeaderOriginalOffset, "1e3"},
		{"attempts zero", retry.HeaderAttempts, "0"},
		{"first failure not RFC 3339", retry.HeaderFirstFailure, "yesterday"},
		{"last before first", retry.HeaderLastFailure, "2025-01-02T03:04:04.000Z"},
		{"spring partition 3 bytes", retry.HeaderSpringOriginalPartition, "\x00\x00\x01"},
		{"spring partition negative", retry.HeaderSpringOriginalPartition, "\xff\xff\xff\xff"},
		{"spring offset 4 bytes", retry.HeaderSpringOriginalOffset, "\x00\x00\x00\x01"},
		{"spring timestamp 9 bytes", retry.HeaderSpringOriginalTimestamp, "\x00\x00\x00\x00\x00\x00\x00\x00\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := valid()
			h[tc.header] = tc.value
			_, err := retry.ParseDeadLetter(&message.Message{Headers: h})
			require.ErrorIs(t, err, retry.ErrMalformedHeader)
			var he *retry.HeaderError
			require.True(t, errors.As(err, &he))
			assert.Equal(t, tc.header, he.Header)
			assert.Contains(t, err.Error(), tc.header)
		})
	}
}

func TestStripHeaders(t *testing.T) {
	h := map[string]string{
		retry.HeaderOriginalTopic: "a", retry.HeaderAttempts: "1", retry.HeaderSpringOriginalTopic: "a",
		retry.HeaderSpringOriginalOffset: "\x00", "app": "keep", "ferry-id": "keep",
	}
	retry.StripHeaders(h)
	assert.Equal(t, map[string]string{"app": "keep", "ferry-id": "keep"}, h)
}

// FuzzParseDeadLetter checks that no header value makes the parser panic,
// that accepted values satisfy the documented invariants, and that headers
// the middleware writes always parse back.
func FuzzParseDeadLetter(f *testing.F) {
	f.Add("orders", "2", "41", "3", "2025-01-02T03:04:05.006Z", "\x00\x00\x00\x02", "\x00\x00\x00\x00\x00\x00\x00\x29", false)
	f.Add("orders", "", "", "", "", "", "", true)
	f.Fuzz(func(t *testing.T, topic, partition, offset, attempts, failure, springPartition, springOffset string, spring bool) {
		h := map[string]string{}
		set := func(k, v string) {
			if v != "" {
				h[k] = v
			}
		}
		if spring {
			h[retry.HeaderSpringOriginalTopic] = topic
		} else {
			h[retry.HeaderOriginalTopic] = topic
		}
		set(retry.HeaderOriginalPartition, partition)
		set(retry.HeaderOriginalOffset, offset)
		set(retry.HeaderAttempts, attempts)
		set(retry.HeaderFirstFailure, failure)
		set(retry.HeaderSpringOriginalPartition, springPartition)
		set(retry.HeaderSpringOriginalOffset, springOffset)
		info, err := retry.ParseDeadLetter(&message.Message{Headers: h})
		if err != nil {
			if !errors.Is(err, retry.ErrMalformedHeader) {
				t.Fatalf("error %v does not wrap ErrMalformedHeader", err)
			}
			return
		}
		if info.Topic == "" || info.Topic != topic {
			t.Fatalf("topic %q, want %q", info.Topic, topic)
		}
		if info.Partition < -1 || info.Offset < -1 || info.Attempts < 0 {
			t.Fatalf("out of range: %+v", info)
		}
		if info.Spring != spring {
			t.Fatalf("Spring = %v, want %v", info.Spring, spring)
		}

		// Whatever the middleware writes for such a message parses back.
		p, o := info.Partition, info.Offset
		pub := &fakePublisher{}
		opts := []retry.Option{retry.WithDeadLetter(pub), retry.WithMaxAttempts(1)}
		if spring {
			opts = append(opts, retry.SpringHeaders())
		}
		mw, err := retry.New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		msg := &message.Message{ID: "x", Time: time.UnixMilli(1), Delivery: message.Delivery{Topic: topic, Group: partition, Attempt: 1, Partition: p, Offset: o}}
		if err := mw(func(context.Context, *message.Message) error { return errors.New(offset) })(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		_, msgs := pub.published()
		back, err := retry.ParseDeadLetter(msgs[0])
		if err != nil {
			t.Fatalf("written headers do not parse: %v", err)
		}
		if back.Topic != topic || back.Partition != p || back.Offset != o || back.Group != partition || back.Attempts != 1 {
			t.Fatalf("round trip: got %+v, want topic %q partition %d offset %d group %q", back, topic, p, o, partition)
		}
	})
}

// TestSpringExceptionHeadersOfAChain: fqcn is the returned error's type,
// cause-fqcn its root cause's, message its text, and the stack trace the
// chain in printStackTrace's layout.
func TestSpringExceptionHeadersOfAChain(t *testing.T) {
	root := &os.PathError{Op: "open", Path: "/orders/7", Err: errors.New("no such file")}
	for name, tc := range map[string]struct {
		err                error
		fqcn, cause, trace string
		message            string
	}{
		"wrapped": {
			err:     fmt.Errorf("load order 7: %w", root),
			fqcn:    "*fmt.wrapError",
			cause:   "*errors.errorString",
			message: "load order 7: open /orders/7: no such file",
			trace: "*fmt.wrapError: load order 7: open /orders/7: no such file\n" +
				"Caused by: *fs.PathError: open /orders/7: no such file\n" +
				"Caused by: *errors.errorString: no such file\n",
		},
		"joined": {
			err:     errors.Join(errors.New("a"), root),
			fqcn:    "*errors.joinError",
			cause:   "*errors.errorString",
			message: "a\nopen /orders/7: no such file",
			trace: "*errors.joinError: a\nopen /orders/7: no such file\n" +
				"Caused by: *errors.errorString: a\n" +
				"Caused by: *fs.PathError: open /orders/7: no such file\n" +
				"Caused by: *errors.errorString: no such file\n",
		},
		"permanent": {
			err:     retry.Permanent(errors.New("invalid order")),
			fqcn:    "*retry.PermanentError",
			cause:   "*errors.errorString",
			message: "invalid order",
			trace:   "*retry.PermanentError: invalid order\nCaused by: *errors.errorString: invalid order\n",
		},
	} {
		t.Run(name, func(t *testing.T) {
			pub := &fakePublisher{}
			h := func(context.Context, *message.Message) error { return tc.err }
			mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1), retry.SpringHeaders())
			require.NoError(t, mw(h)(context.Background(), delivered("orders", 1)))
			_, msgs := pub.published()
			require.Len(t, msgs, 1)
			hd := msgs[0].Headers
			assert.Equal(t, tc.fqcn, hd[retry.HeaderSpringExceptionFQCN])
			assert.Equal(t, tc.cause, hd[retry.HeaderSpringExceptionCauseFQCN])
			assert.Equal(t, tc.message, hd[retry.HeaderSpringExceptionMessage])
			assert.Equal(t, tc.trace, hd[retry.HeaderSpringExceptionStacktrace])
			assert.Equal(t, tc.trace, retry.StackTrace(tc.err))
			info, err := retry.ParseDeadLetter(msgs[0])
			require.NoError(t, err)
			assert.Equal(t, tc.cause, info.ErrorCauseType)
		})
	}
}

// TestSpringPanicHeaders: a panic's trace is the panic value and the
// goroutine stack, tab-indented; its root cause is the panic value.
func TestSpringPanicHeaders(t *testing.T) {
	pub := &fakePublisher{}
	h := func(context.Context, *message.Message) error { panic(fmt.Errorf("kaput: %w", io.ErrUnexpectedEOF)) }
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1), retry.SpringHeaders())
	require.NoError(t, mw(h)(context.Background(), delivered("orders", 1)))
	_, msgs := pub.published()
	require.Len(t, msgs, 1)
	hd := msgs[0].Headers
	assert.Equal(t, "*message.PanicError", hd[retry.HeaderSpringExceptionFQCN])
	assert.Equal(t, "*errors.errorString", hd[retry.HeaderSpringExceptionCauseFQCN])
	assert.Equal(t, "kaput: unexpected EOF", hd[retry.HeaderSpringExceptionMessage])
	trace := hd[retry.HeaderSpringExceptionStacktrace]
	assert.True(t, strings.HasPrefix(trace, "*message.PanicError: ferry: handler panic: kaput: unexpected EOF\n\tgoroutine "), trace)
	assert.Contains(t, trace, "\nCaused by: *fmt.wrapError: kaput: unexpected EOF\nCaused by: *errors.errorString: unexpected EOF\n")

	pub = &fakePublisher{}
	h = func(context.Context, *message.Message) error { panic("plain") }
	mw = mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1), retry.SpringHeaders())
	require.NoError(t, mw(h)(context.Background(), delivered("orders", 1)))
	_, msgs = pub.published()
	assert.Equal(t, "string", msgs[0].Headers[retry.HeaderSpringExceptionCauseFQCN], "a panic value that is not an error: its type")
}

// TestSpringTimestampTypeAndPartition: the timestamp type follows
// Delivery.LogAppendTime, and the Spring profile asks the publisher for
// the original partition (adapter.WithPartition), ferry's profile not.
func TestSpringTimestampTypeAndPartition(t *testing.T) {
	for _, tc := range []struct {
		spring, logAppend bool
		wantType          string
		wantPartition     int32
	}{
		{spring: true, logAppend: true, wantType: "LogAppendTime", wantPartition: 2},
		{spring: true, logAppend: false, wantType: "CreateTime", wantPartition: 2},
		{spring: false, wantPartition: -1},
	} {
		pub := &fakePublisher{}
		h, _ := counting(0)
		opts := []retry.Option{retry.WithDeadLetter(pub), retry.WithMaxAttempts(1)}
		if tc.spring {
			opts = append(opts, retry.SpringHeaders())
		}
		msg := delivered("orders", 1)
		msg.Time = time.UnixMilli(1700000000123)
		msg.Delivery.LogAppendTime = tc.logAppend
		require.NoError(t, mustNew(t, opts...)(h)(context.Background(), msg))
		_, msgs := pub.published()
		require.Len(t, msgs, 1)
		if tc.spring {
			assert.Equal(t, tc.wantType, msgs[0].Headers[retry.HeaderSpringOriginalTimestampType])
		}
		assert.Equal(t, []int32{tc.wantPartition}, pub.partitions(), "spring=%v", tc.spring)
	}
}

func TestSpringDeadLetterTopic(t *testing.T) {
	assert.Equal(t, "orders-dlt", retry.SpringDeadLetterTopic(delivered("orders", 1)))
	assert.Equal(t, "", retry.SpringDeadLetterTopic(delivered("", 1)))
	assert.Equal(t, "", retry.SpringDeadLetterTopic(nil))
	pub := &fakePublisher{}
	h, _ := counting(0)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1), retry.SpringHeaders(), retry.WithDeadLetterTopic(retry.SpringDeadLetterTopic))
	require.NoError(t, mw(h)(context.Background(), delivered("orders", 1)))
	topics, _ := pub.published()
	assert.Equal(t, []string{"orders-dlt"}, topics)
}
