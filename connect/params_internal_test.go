package connect

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// paramCase is one parameter with a good value, what it must set, and a
// bad value.
type paramCase struct {
	scheme, name, good string
	check              func(*spec) bool
	bad                string
}

var paramCases = []paramCase{
	// Every scheme.
	{"kafka", "group", "billing", func(s *spec) bool { return s.group == "billing" }, ""},
	{"kafka", "concurrency", "8", func(s *spec) bool { return s.concurrency == 8 }, "0"},
	{"kafka", "drain_timeout", "5s", func(s *spec) bool { return s.drainTimeout == 5*time.Second }, "-1s"},
	{"kafka", "redelivery_initial", "20ms", func(s *spec) bool { return s.redeliveryLo == 20*time.Millisecond && s.redeliveryHi == 10*time.Second }, "soon"},
	{"kafka", "redelivery_max", "1s", func(s *spec) bool { return s.redeliveryHi == time.Second && s.redeliveryLo == 100*time.Millisecond }, "0s"},
	{"kafka", "max_pending", "64", func(s *spec) bool { return s.maxPending == 64 }, "0"},
	{"kafka", "partitions", "12", func(s *spec) bool { return s.partitions == 12 }, "zero"},
	{"kafka", "replication", "3", func(s *spec) bool { return s.replication == 3 && s.haveReplication }, "0"},
	{"kafka", "create_topics", "false", func(s *spec) bool { return s.createTopics != nil && !*s.createTopics }, "nope"},
	{"kafka", "delivery_timeout", "2s", func(s *spec) bool { return s.deliveryTimeout == 2*time.Second }, "0"},
	{"kafka", "start", "latest", func(s *spec) bool { return s.start == "latest" }, "middle"},
	{"kafka", "commit_interval", "200ms", func(s *spec) bool { return s.commitInterval == 200*time.Millisecond }, "-5ms"},
	{"kafka", "client_id", "billing-1", func(s *spec) bool { return s.clientID == "billing-1" }, ""},
	{"kafka", "tls", "true", func(s *spec) bool { return s.tls }, "maybe"},
	{"kafka", "sasl", "scram-sha-512", func(s *spec) bool { return s.sasl == "scram-sha-512" }, "kerberos"},

	{"amqp", "group", "billing", func(s *spec) bool { return s.group == "billing" }, ""},
	{"amqp", "concurrency", "4", func(s *spec) bool { return s.concurrency == 4 }, "-1"},
	{"amqp", "drain_timeout", "1m", func(s *spec) bool { return s.drainTimeout == time.Minute }, "forever"},
	{"amqp", "redelivery_initial", "1s", func(s *spec) bool { return s.redeliveryLo == time.Second }, "0"},
	{"amqp", "redelivery_max", "30s", func(s *spec) bool { return s.redeliveryHi == 30*time.Second }, "x"},
	{"amqp", "prefetch", "64", func(s *spec) bool { return s.prefetch == 64 }, "65536"},
	{"amqp", "shards", "4", func(s *spec) bool { return s.shards == 4 }, "0"},
	{"amqp", "competing", "true", func(s *spec) bool { return s.competing }, "2"},
	{"amqp", "quorum", "true", func(s *spec) bool { return s.quorum }, "maybe"},
	{"amqp", "exchange_kind", "fanout", func(s *spec) bool { return s.exchangeKind == "fanout" }, "headers"},
	{"amqp", "key_header", "x-key", func(s *spec) bool { return s.keyHeader == "x-key" }, ""},
	{"amqp", "max_payload", "1048576", func(s *spec) bool { return s.maxPayload == 1<<20 }, "0"},
	{"amqp", "publish_channels", "4", func(s *spec) bool { return s.pubChannels == 4 }, "65"},
	{"amqp", "dial_timeout", "3s", func(s *spec) bool { return s.dialTimeout == 3*time.Second }, "0"},
	{"amqp", "reconnect_initial", "50ms", func(s *spec) bool { return s.reconnectLo == 50*time.Millisecond && s.reconnectHi == 10*time.Second }, "0"},
	{"amqp", "reconnect_max", "2s", func(s *spec) bool { return s.reconnectHi == 2*time.Second }, "-2s"},
	{"amqp", "group_heartbeat", "250ms", func(s *spec) bool { return s.groupHeartbeat == 250*time.Millisecond }, "1ms"},
	{"amqp", "declare_groups", "a,b", func(s *spec) bool { return strings.Join(s.declareGroups, "|") == "a|b" }, "a,,b"},
	{"amqp", "heartbeat", "5", func(s *spec) bool { return len(s.native) == 1 && s.native[0] == "heartbeat" }, ""},
	{"amqp", "connection_timeout", "3000", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "channel_max", "10", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "frame_max", "131072", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "auth_mechanism", "external", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "certfile", "/c.pem", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "keyfile", "/k.pem", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "cacertfile", "/ca.pem", func(s *spec) bool { return len(s.native) == 1 }, ""},
	{"amqp", "server_name_indication", "rmq.example", func(s *spec) bool { return len(s.native) == 1 }, ""},

	{"inmem", "group", "g", func(s *spec) bool { return s.group == "g" }, ""},
	{"inmem", "concurrency", "2", func(s *spec) bool { return s.concurrency == 2 }, "two"},
	{"inmem", "drain_timeout", "1s", func(s *spec) bool { return s.drainTimeout == time.Second }, "0"},
	{"inmem", "redelivery_initial", "5ms", func(s *spec) bool { return s.redeliveryLo == 5*time.Millisecond }, "0"},
	{"inmem", "redelivery_max", "50ms", func(s *spec) bool { return s.redeliveryHi == 50*time.Millisecond }, "0"},
	{"inmem", "max_pending", "10", func(s *spec) bool { return s.maxPending == 10 }, "-1"},
	{"inmem", "partitions", "4", func(s *spec) bool { return s.partitions == 4 }, "65537"},
	{"inmem", "retention", "100", func(s *spec) bool { return s.retention == 100 && s.haveRetention }, "-1"},
	{"inmem", "retention_age", "0s", func(s *spec) bool { return s.retentionAge == 0 && s.haveRetentionAg }, "-1h"},
}

func parseTest(t *testing.T, raw string) (*spec, error) {
	t.Helper()
	r, err := splitURL(raw)
	if err != nil {
		return nil, err
	}
	return parseSpec(r)
}

func base(scheme string) string {
	switch scheme {
	case "kafka":
		return "kafka://127.0.0.1:9092"
	case "amqp":
		return "amqp://guest:s3cret@127.0.0.1:5672/"
	}
	return "inmem://"
}

// TestEveryParameter: each parameter of each scheme sets what it names,
// and a bad value is an error naming the parameter, the value and what
// it takes. A parameter without a case fails the test.
func TestEveryParameter(t *testing.T) {
	for _, scheme := range []string{"kafka", "amqp", "inmem"} {
		for _, name := range Params(scheme) {
			found := false
			for _, c := range paramCases {
				found = found || c.scheme == scheme && c.name == name
			}
			if !found {
				t.Errorf("%s parameter %q has no test case", scheme, name)
			}
		}
	}
	for _, c := range paramCases {
		t.Run(c.scheme+"/"+c.name, func(t *testing.T) {
			raw := base(c.scheme) + "?" + c.name + "=" + c.good
			s, err := parseTest(t, raw)
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if !c.check(s) {
				t.Errorf("%s: spec %+v does not have what %s=%s sets", raw, *s, c.name, c.good)
			}
			if c.bad == "" && slicesContain(amqpNative, c.name) {
				return // amqp091 checks its own parameters
			}
			raw = base(c.scheme) + "?" + c.name + "=" + c.bad
			_, err = parseTest(t, raw)
			if err == nil {
				t.Fatalf("%s: no error", raw)
			}
			if !errors.Is(err, message.ErrInvalidConfig) {
				t.Errorf("%s: %v does not match ErrInvalidConfig", raw, err)
			}
			want := "parameter " + c.name + "=\"" + c.bad + "\" is "
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "; want ") {
				t.Errorf("%s: %q does not contain %q and what the parameter takes", raw, err, want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the password is in %q", err)
			}
		})
	}
}

func slicesContain(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func TestCrossParameterChecks(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"inmem://?redelivery_initial=2s&redelivery_max=1s", "redelivery_initial=2s is more than redelivery_max=1s"},
		{"amqp://h/?reconnect_initial=20s", ""}, // max follows the initial up
		{"amqp://h/?reconnect_initial=2s&reconnect_max=1s", "reconnect_initial=2s is more than reconnect_max=1s"},
		{"kafka://h:1?concurrency=8&max_pending=4", "max_pending=4 is less than concurrency=8"},
		{"kafka://h:1?create_topics=false&partitions=3", "create_topics=false with partitions"},
		{"inmem://?group=a&group=b", `parameter "group" is given 2 times`},
		{"kafka://h:1?prefetch=10", `unknown parameter "prefetch" for kafka://; known: client_id, commit_interval, concurrency`},
		{"amqp://u:s3cret@h/?partitions=10", `unknown parameter "partitions" for amqp://; known: auth_mechanism, cacertfile, certfile, channel_max, competing, concurrency`},
		{"inmem://?x=%zz", "the query has a bad percent-escape"},
	} {
		s, err := parseTest(t, c.url)
		if c.want == "" {
			if err != nil || s.reconnectHi != 20*time.Second {
				t.Errorf("%s: %v, reconnect max %v, want no error and 20s", c.url, err, s)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("%s: error %v, want one containing %q", c.url, err, c.want)
		}
	}
}
