package retry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferrymsg/ferry/message"
)

// Headers that the middleware adds to a dead-letter copy (ferry's profile,
// the default). All values are UTF-8 text.
const (
	// HeaderPrefix starts every ferry dead-letter header name.
	HeaderPrefix = "ferry-dlt-"
	// HeaderOriginalTopic is the topic the message was consumed from.
	HeaderOriginalTopic = "ferry-dlt-original-topic"
	// HeaderOriginalPartition is the partition, in decimal; absent where
	// the broker has none (AMQP).
	HeaderOriginalPartition = "ferry-dlt-original-partition"
	// HeaderOriginalOffset is the offset within the partition, in decimal;
	// absent where the broker has none (AMQP).
	HeaderOriginalOffset = "ferry-dlt-original-offset"
	// HeaderOriginalGroup is the consumer group that gave up; absent when
	// empty.
	HeaderOriginalGroup = "ferry-dlt-original-group"
	// HeaderErrorMessage is the text of the last handler error (for a panic: the
	// panic value and stack), valid UTF-8, truncated to WithMaxErrorLength.
	HeaderErrorMessage = "ferry-dlt-error"
	// HeaderErrorType is the Go type of the last handler error, as printed
	// by %T (for example "*fmt.wrapError").
	HeaderErrorType = "ferry-dlt-error-type"
	// HeaderAttempts is the number of failed handler calls, in decimal,
	// counted as the package doc explains. Written in both profiles.
	HeaderAttempts = "ferry-dlt-attempts"
	// HeaderFirstFailure and HeaderLastFailure are the times of the first
	// and last failed attempt known to the middleware, RFC 3339 in UTC with
	// milliseconds (TimeFormat). Written in both profiles.
	HeaderFirstFailure = "ferry-dlt-first-failure"
	HeaderLastFailure  = "ferry-dlt-last-failure"
)

// Headers that SpringHeaders writes instead, with the names and encodings
// of Spring Kafka's DeadLetterPublishingRecoverer. Binary values are raw
// big-endian bytes held in a Go string: the Kafka adapter writes header
// values as raw bytes, so they round-trip on Kafka; on AMQP they are carried
// as string (longstr) values holding the same bytes.
const (
	// HeaderSpringPrefix starts every Spring Kafka dead-letter header name.
	HeaderSpringPrefix = "kafka_dlt-"
	// HeaderSpringOriginalTopic is the original topic (UTF-8).
	HeaderSpringOriginalTopic = "kafka_dlt-original-topic"
	// HeaderSpringOriginalPartition is the partition as a 4-byte
	// big-endian int; absent where the broker has none.
	HeaderSpringOriginalPartition = "kafka_dlt-original-partition"
	// HeaderSpringOriginalOffset is the offset as an 8-byte big-endian
	// long; absent where the broker has none.
	HeaderSpringOriginalOffset = "kafka_dlt-original-offset"
	// HeaderSpringOriginalTimestamp is the message's Time in Unix
	// milliseconds as an 8-byte big-endian long; absent when Time is zero.
	HeaderSpringOriginalTimestamp = "kafka_dlt-original-timestamp"
	// HeaderSpringOriginalTimestampType is the original record's
	// timestamp type, as Java's TimestampType.toString writes it:
	// "LogAppendTime" when Delivery.LogAppendTime (a Kafka topic with
	// broker-set timestamps), else "CreateTime"; absent when Time is zero.
	HeaderSpringOriginalTimestampType = "kafka_dlt-original-timestamp-type"
	// HeaderSpringOriginalConsumerGroup is the group (UTF-8); absent when
	// empty.
	HeaderSpringOriginalConsumerGroup = "kafka_dlt-original-consumer-group"
	// HeaderSpringExceptionMessage is the error text (for a panic: the
	// panic value only), truncated to WithMaxErrorLength.
	HeaderSpringExceptionMessage = "kafka_dlt-exception-message"
	// HeaderSpringExceptionFQCN is the Go type of the handler's error
	// (%T, for example "*fmt.wrapError"), where Spring writes the Java
	// class name of the exception (its container's
	// ListenerExecutionFailedException). See the package doc's mapping.
	HeaderSpringExceptionFQCN = "kafka_dlt-exception-fqcn"
	// HeaderSpringExceptionCauseFQCN is the Go type of the error's root
	// cause: the innermost error of its Unwrap chain (the first one of a
	// joined error; for a panic, the panic value's type), or the error's
	// own type when it wraps nothing. Spring writes the class of the
	// exception the listener threw. Always written.
	HeaderSpringExceptionCauseFQCN = "kafka_dlt-exception-cause-fqcn"
	// HeaderSpringExceptionStacktrace is the error in the layout of
	// Java's printStackTrace, for every failure: a first line
	// "<type>: <text>", for a panic the goroutine stack as tab-indented
	// lines, then a "Caused by: <type>: <text>" line for each error it
	// wraps, depth first (StackTrace); truncated to WithMaxErrorLength.
	HeaderSpringExceptionStacktrace = "kafka_dlt-exception-stacktrace"
)

// SpringDeadLetterSuffix is what Spring Kafka 3.3 and later append to a
// topic to name its dead-letter topic (DeadLetterPublishingRecoverer's
// default destination resolver); ferry's own default is
// DefaultDeadLetterSuffix.
const SpringDeadLetterSuffix = "-dlt"

// SpringDeadLetterTopic names a message's dead-letter topic as Spring Kafka
// 3.3 and later do, <topic>-dlt; pass it to WithDeadLetterTopic beside
// SpringHeaders. It returns "" for a message without Delivery.Topic (the
// middleware then reports that it has no dead-letter topic).
func SpringDeadLetterTopic(msg *message.Message) string {
	if msg == nil || msg.Delivery.Topic == "" {
		return ""
	}
	return msg.Delivery.Topic + SpringDeadLetterSuffix
}

// TimeFormat is the layout of HeaderFirstFailure and HeaderLastFailure:
// RFC 3339 with milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// DefaultMaxErrorLength is the default of WithMaxErrorLength.
const DefaultMaxErrorLength = 8 << 10

// DeadLetterInfo is what a dead-letter message's headers say about the
// original. ParseDeadLetter fills it from either header profile.
type DeadLetterInfo struct {
	// Topic is the original topic.
	Topic string
	// Partition and Offset are the original position; -1 when absent.
	Partition int32
	Offset    int64
	// Group is the consumer group that gave up; "" when absent.
	Group string
	// Error and ErrorType describe the last handler error.
	Error     string
	ErrorType string
	// ErrorCauseType is the type of its root cause (Spring's profile,
	// HeaderSpringExceptionCauseFQCN); "" when absent.
	ErrorCauseType string
	// Attempts is the number of failed attempts; 0 when absent.
	Attempts int
	// FirstFailure and LastFailure are zero when absent.
	FirstFailure time.Time
	LastFailure  time.Time
	// OriginalTime is the Spring original-timestamp header; zero when
	// absent (ferry's profile keeps the original Message.Time instead).
	OriginalTime time.Time
	// Spring reports that the original topic came from Spring Kafka's
	// headers.
	Spring bool
}

func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if n <= 0 || len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (r *retrier) writeHeaders(h map[string]string, msg *message.Message, f *failure) {
	// Drop the dead-letter headers of an earlier trip through a DLT.
	StripHeaders(h)
	d := &msg.Delivery
	errText := truncateUTF8(f.err.Error(), r.errMaxLen)
	errType := fmt.Sprintf("%T", f.err)
	if r.spring {
		h[HeaderSpringOriginalTopic] = d.Topic
		if d.Partition >= 0 {
			h[HeaderSpringOriginalPartition] = string(binary.BigEndian.AppendUint32(nil, uint32(d.Partition)))
		}
		if d.Offset >= 0 {
			h[HeaderSpringOriginalOffset] = string(binary.BigEndian.AppendUint64(nil, uint64(d.Offset)))
		}
		if !msg.Time.IsZero() {
			h[HeaderSpringOriginalTimestamp] = string(binary.BigEndian.AppendUint64(nil, uint64(msg.Time.UnixMilli())))
			h[HeaderSpringOriginalTimestampType] = "CreateTime"
			if d.LogAppendTime {
				h[HeaderSpringOriginalTimestampType] = "LogAppendTime"
			}
		}
		if d.Group != "" {
			h[HeaderSpringOriginalConsumerGroup] = d.Group
		}
		var pe *message.PanicError
		if errors.As(f.err, &pe) {
			errText = truncateUTF8(fmt.Sprint(pe.Value), r.errMaxLen)
		}
		h[HeaderSpringExceptionMessage] = errText
		h[HeaderSpringExceptionFQCN] = errType
		h[HeaderSpringExceptionCauseFQCN] = rootCauseType(f.err)
		h[HeaderSpringExceptionStacktrace] = truncateUTF8(StackTrace(f.err), r.errMaxLen)
	} else {
		h[HeaderOriginalTopic] = d.Topic
		if d.Partition >= 0 {
			h[HeaderOriginalPartition] = strconv.FormatInt(int64(d.Partition), 10)
		}
		if d.Offset >= 0 {
			h[HeaderOriginalOffset] = strconv.FormatInt(d.Offset, 10)
		}
		if d.Group != "" {
			h[HeaderOriginalGroup] = d.Group
		}
		h[HeaderErrorMessage] = errText
		h[HeaderErrorType] = errType
	}
	h[HeaderAttempts] = strconv.Itoa(f.attempts)
	h[HeaderFirstFailure] = f.first.UTC().Format(TimeFormat)
	h[HeaderLastFailure] = f.last.UTC().Format(TimeFormat)
}

// StripHeaders deletes every dead-letter header of both profiles (names
// starting with HeaderPrefix or HeaderSpringPrefix) from h. Replay uses it
// before republishing.
func StripHeaders(h map[string]string) {
	for k := range h {
		if strings.HasPrefix(k, HeaderPrefix) || strings.HasPrefix(k, HeaderSpringPrefix) {
			delete(h, k)
		}
	}
}

// ParseDeadLetter reads the dead-letter headers of msg, in ferry's profile
// or Spring Kafka's (ferry's wins where both are present). It returns
// ErrNotDeadLetter when neither original-topic header is present, and a
// *HeaderError (wrapping ErrMalformedHeader) naming the first header it
// cannot decode. Absent optional headers leave their field at its zero
// value (-1 for Partition and Offset).
func ParseDeadLetter(msg *message.Message) (DeadLetterInfo, error) {
	info := DeadLetterInfo{Partition: -1, Offset: -1}
	if msg == nil {
		return info, fmt.Errorf("%w: nil message", ErrNotDeadLetter)
	}
	h := msg.Headers
	if t, ok := h[HeaderOriginalTopic]; ok {
		info.Topic = t
		if t == "" {
			return info, &HeaderError{Header: HeaderOriginalTopic, Reason: "empty topic"}
		}
	} else if t, ok := h[HeaderSpringOriginalTopic]; ok {
		info.Topic, info.Spring = t, true
		if t == "" {
			return info, &HeaderError{Header: HeaderSpringOriginalTopic, Reason: "empty topic"}
		}
	} else {
		return info, ErrNotDeadLetter
	}
	var err error
	// Spring first, so that ferry's values win.
	if v, ok := h[HeaderSpringOriginalPartition]; ok {
		p, err := beInt(HeaderSpringOriginalPartition, v, 4)
		if err != nil {
			return info, err
		}
		info.Partition = int32(p)
	}
	if v, ok := h[HeaderSpringOriginalOffset]; ok {
		if info.Offset, err = beInt(HeaderSpringOriginalOffset, v, 8); err != nil {
			return info, err
		}
	}
	if v, ok := h[HeaderSpringOriginalTimestamp]; ok {
		ms, err := beInt(HeaderSpringOriginalTimestamp, v, 8)
		if err != nil {
			return info, err
		}
		info.OriginalTime = time.UnixMilli(ms).UTC()
	}
	if v, ok := h[HeaderSpringOriginalConsumerGroup]; ok {
		info.Group = v
	}
	if v, ok := h[HeaderSpringExceptionMessage]; ok {
		info.Error = v
	}
	if v, ok := h[HeaderSpringExceptionFQCN]; ok {
		info.ErrorType = v
	}
	if v, ok := h[HeaderSpringExceptionCauseFQCN]; ok {
		info.ErrorCauseType = v
	}
	if v, ok := h[HeaderOriginalPartition]; ok {
		p, err := decInt(HeaderOriginalPartition, v, 31)
		if err != nil {
			return info, err
		}
		info.Partition = int32(p)
	}
	if v, ok := h[HeaderOriginalOffset]; ok {
		if info.Offset, err = decInt(HeaderOriginalOffset, v, 63); err != nil {
			return info, err
		}
	}
	if v, ok := h[HeaderOriginalGroup]; ok {
		info.Group = v
	}
	if v, ok := h[HeaderErrorMessage]; ok {
		info.Error = v
	}
	if v, ok := h[HeaderErrorType]; ok {
		info.ErrorType = v
	}
	if v, ok := h[HeaderAttempts]; ok {
		n, err := decInt(HeaderAttempts, v, 31)
		if err != nil {
			return info, err
		}
		if n < 1 {
			return info, &HeaderError{Header: HeaderAttempts, Value: v, Reason: "attempts must be at least 1"}
		}
		info.Attempts = int(n)
	}
	for _, th := range []struct {
		name string
		dst  *time.Time
	}{{HeaderFirstFailure, &info.FirstFailure}, {HeaderLastFailure, &info.LastFailure}} {
		if v, ok := h[th.name]; ok {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return info, &HeaderError{Header: th.name, Value: v, Reason: "not an RFC 3339 time"}
			}
			*th.dst = t
		}
	}
	if !info.FirstFailure.IsZero() && !info.LastFailure.IsZero() && info.LastFailure.Before(info.FirstFailure) {
		return info, &HeaderError{Header: HeaderLastFailure, Value: h[HeaderLastFailure], Reason: "last failure is before first failure"}
	}
	return info, nil
}

// beInt decodes a non-negative big-endian integer of exactly size bytes.
func beInt(name, v string, size int) (int64, error) {
	if len(v) != size {
		return 0, &HeaderError{Header: name, Value: v, Reason: fmt.Sprintf("want %d big-endian bytes, got %d", size, len(v))}
	}
	var n int64
	if size == 4 {
		n = int64(int32(binary.BigEndian.Uint32([]byte(v))))
	} else {
		n = int64(binary.BigEndian.Uint64([]byte(v)))
	}
	if n < 0 {
		return 0, &HeaderError{Header: name, Value: v, Reason: fmt.Sprintf("negative value %d", n)}
	}
	return n, nil
}

// decInt decodes a non-negative decimal integer that fits in bits bits.
func decInt(name, v string, bits int) (int64, error) {
	n, err := strconv.ParseInt(v, 10, bits+1)
	if err != nil || n < 0 || (bits < 63 && n >= 1<<bits) {
		return 0, &HeaderError{Header: name, Value: v, Reason: fmt.Sprintf("want a non-negative decimal integer below 2^%d", bits)}
	}
	return n, nil
}

// maxChain bounds the walks down an error's Unwrap chain (a cyclic chain
// is a bug of the error's type, not a reason to loop).
const maxChain = 64

// StackTrace renders err the way Java's Throwable.printStackTrace renders
// an exception, for Spring Kafka's kafka_dlt-exception-stacktrace header: a
// first line "<Go type>: <text>"; for a *message.PanicError the panic value
// as text and then the goroutine stack, each line indented by a tab as
// Java's "at" frames are; then, depth first, a "Caused by: <Go type>:
// <text>" line for each error it wraps (errors.Unwrap, or each error of a
// joined error). An ordinary Go error carries no stack of its own: its
// chain of causes is its trace.
func StackTrace(err error) string {
	if err == nil {
		return ""
	}
	var b strings.Builder
	writeTrace(&b, err, "", 0)
	return b.String()
}

func writeTrace(b *strings.Builder, err error, prefix string, depth int) {
	if depth >= maxChain {
		return
	}
	b.WriteString(prefix)
	if pe, ok := err.(*message.PanicError); ok {
		fmt.Fprintf(b, "%T: ferry: handler panic: %v\n", err, pe.Value)
		for _, line := range strings.Split(strings.TrimRight(string(pe.Stack), "\n"), "\n") {
			b.WriteString("\t")
			b.WriteString(line)
			b.WriteString("\n")
		}
	} else {
		fmt.Fprintf(b, "%T: %s\n", err, err.Error())
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if c := u.Unwrap(); c != nil {
			writeTrace(b, c, "Caused by: ", depth+1)
		}
	case interface{ Unwrap() []error }:
		for _, c := range u.Unwrap() {
			if c != nil {
				writeTrace(b, c, "Caused by: ", depth+1)
			}
		}
	}
}

// rootCauseType is the Go type of err's root cause: the innermost error of
// its Unwrap chain (the first of a joined error's), the panic value of a
// *message.PanicError, or err itself when it wraps nothing.
func rootCauseType(err error) string {
	for range maxChain {
		if pe, ok := err.(*message.PanicError); ok {
			if inner, ok := pe.Value.(error); ok && inner != nil {
				err = inner
				continue
			}
			return fmt.Sprintf("%T", pe.Value)
		}
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				if c != nil {
					next = c
					break
				}
			}
		}
		if next == nil {
			break
		}
		err = next
	}
	return fmt.Sprintf("%T", err)
}
