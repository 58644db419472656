package main

import (
	"errors"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

func TestFilterMatch(t *testing.T) {
	now := time.Now()
	e := &dltEntry{
		msg:  &message.Message{ID: "id-1", Key: "alice", Time: now.Add(-2 * time.Hour)},
		info: retry.DeadLetterInfo{Topic: "orders", Group: "billing", Error: "charge o-1: timeout after 5s", LastFailure: now.Add(-time.Hour)},
	}
	for _, c := range []struct {
		filters []string
		want    bool
	}{
		{nil, true},
		{[]string{"error=timeout"}, true},
		{[]string{"error=^charge o-[0-9]+:"}, true},
		{[]string{"error=SKU"}, false},
		{[]string{"key=alice"}, true},
		{[]string{"key=bob"}, false},
		{[]string{"id=id-1"}, true},
		{[]string{"id=id-2"}, false},
		{[]string{"topic=orders", "group=billing"}, true},
		{[]string{"topic=orders", "group=shipping"}, false},
		{[]string{"since=90m"}, true}, // the last failure, not the message time, counts
		{[]string{"since=30m"}, false},
		{[]string{"since=" + now.Add(-61*time.Minute).UTC().Format(time.RFC3339)}, true},
		{[]string{"since=" + now.Add(-59*time.Minute).UTC().Format(time.RFC3339)}, false},
		{[]string{"error=timeout", "key=bob"}, false},
	} {
		f, err := parseFilters(c.filters)
		if err != nil {
			t.Fatalf("%q: %v", c.filters, err)
		}
		if got := f.match(e); got != c.want {
			t.Errorf("%q: match %v, want %v", c.filters, got, c.want)
		}
	}
	for _, bad := range []string{"error", "error=(", "colour=red", "since=yesterday", "since=-1h"} {
		_, err := parseFilters([]string{bad})
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
}

func TestDecodeSpringHeaders(t *testing.T) {
	for _, c := range []struct{ k, v, want string }{
		{retry.HeaderSpringOriginalPartition, "\x00\x00\x00\x07", "7"},
		{retry.HeaderSpringOriginalOffset, "\x00\x00\x00\x00\x00\x00\x01\x00", "256"},
		{retry.HeaderSpringOriginalTimestamp, "\x00\x00\x01\x8c\xc2\x51\xf4\x00", "1704067200000 (2024-01-01T00:00:00.000Z)"},
		{retry.HeaderSpringOriginalPartition, "\x07", "0x07"}, // not 4 bytes: shown as bytes
		{"x", "plain", "plain"},
	} {
		if got := decodeHeader(c.k, c.v); got != c.want {
			t.Errorf("decodeHeader(%s, %q) = %q, want %q", c.k, c.v, got, c.want)
		}
	}
}
