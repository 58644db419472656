package connect

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/amqp"
)

// spec is what the query parameters of a URL say, checked. A zero field
// was not given (the adapter's default applies).
type spec struct {
	// Every scheme: the defaults of the subscribers Broker.NewSubscriber
	// makes.
	group        string
	concurrency  int
	maxPending   int // kafka, inmem
	redeliveryLo time.Duration
	redeliveryHi time.Duration
	drainTimeout time.Duration

	// kafka and inmem
	partitions int

	// kafka
	replication     int
	haveReplication bool
	createTopics    *bool
	deliveryTimeout time.Duration
	start           string // "earliest" or "latest"
	commitInterval  time.Duration
	clientID        string
	tls             bool
	sasl            string // "plain", "scram-sha-256", "scram-sha-512"

	// inmem
	retention       int
	haveRetention   bool
	retentionAge    time.Duration
	haveRetentionAg bool

	// amqp
	prefetch       int
	shards         int
	competing      bool
	quorum         bool
	exchangeKind   string
	keyHeader      string
	maxPayload     int
	pubChannels    int
	dialTimeout    time.Duration
	reconnectLo    time.Duration
	reconnectHi    time.Duration
	groupHeartbeat time.Duration
	declareGroups  []string
	native         []string // amqp091's own parameters, passed on in the URL
}

// param is one query parameter: its name, what it takes (for the errors
// and the doc) and how it sets the spec. set returns the reason a value
// is bad, "" if it is good.
type param struct {
	name string
	want string
	set  func(s *spec, v string) string
}

// Parameters common to every scheme.
var subscriberParams = []param{
	{"group", "a non-empty name", func(s *spec, v string) string {
		if v == "" {
			return "empty"
		}
		s.group = v
		return ""
	}},
	{"concurrency", "an integer from 1", intParam(1, 1<<20, func(s *spec, n int) { s.concurrency = n })},
	{"drain_timeout", "a positive duration such as 10s", durParam(false, func(s *spec, d time.Duration) { s.drainTimeout = d })},
	{"redelivery_initial", "a positive duration such as 100ms, at most redelivery_max", durParam(false, func(s *spec, d time.Duration) { s.redeliveryLo = d })},
	{"redelivery_max", "a positive duration such as 10s, at least redelivery_initial", durParam(false, func(s *spec, d time.Duration) { s.redeliveryHi = d })},
}

var maxPendingParam = param{"max_pending", "an integer from 1, at least concurrency", intParam(1, 1<<30, func(s *spec, n int) { s.maxPending = n })}

var kafkaParams = append(slices.Clone(subscriberParams),
	maxPendingParam,
	param{"partitions", "an integer from 1 (the partitions of the topics ferry creates)", intParam(1, 1<<20, func(s *spec, n int) { s.partitions = n })},
	param{"replication", "-1 (the broker's default) or an integer from 1", func(s *spec, v string) string {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 || n < -1 || n > 1<<15-1 {
			return "not -1 or an integer from 1 to 32767"
		}
		s.replication, s.haveReplication = n, true
		return ""
	}},
	param{"create_topics", "true or false", boolParam(func(s *spec, b bool) { s.createTopics = &b })},
	param{"delivery_timeout", "a positive duration such as 30s", durParam(false, func(s *spec, d time.Duration) { s.deliveryTimeout = d })},
	param{"start", "earliest or latest", func(s *spec, v string) string {
		if v != "earliest" && v != "latest" {
			return "not earliest or latest"
		}
		s.start = v
		return ""
	}},
	param{"commit_interval", "a positive duration such as 1s", durParam(false, func(s *spec, d time.Duration) { s.commitInterval = d })},
	param{"client_id", "a non-empty client ID", func(s *spec, v string) string {
		if v == "" {
			return "empty"
		}
		s.clientID = v
		return ""
	}},
	param{"tls", "true or false", boolParam(func(s *spec, b bool) { s.tls = b })},
	param{"sasl", "plain, scram-sha-256 or scram-sha-512 (with user:password@ in the URL)", func(s *spec, v string) string {
		switch v {
		case "plain", "scram-sha-256", "scram-sha-512":
			s.sasl = v
			return ""
		}
		return "not plain, scram-sha-256 or scram-sha-512"
	}},
)

var inmemParams = append(slices.Clone(subscriberParams),
	maxPendingParam,
	param{"partitions", "an integer from 1 to 65536", intParam(1, 1<<16, func(s *spec, n int) { s.partitions = n })},
	param{"retention", "an integer from 0 (messages kept per partition for groups that join later)", intParam(0, 1<<30, func(s *spec, n int) { s.retention, s.haveRetention = n, true })},
	param{"retention_age", "a duration from 0 such as 1h", durParam(true, func(s *spec, d time.Duration) { s.retentionAge, s.haveRetentionAg = d, true })},
)

// amqpNative are amqp091's own URI parameters
// (https://www.rabbitmq.com/docs/uri-query-parameters): they stay in the
// URL given to the adapter, which checks them.
var amqpNative = []string{"heartbeat", "connection_timeout", "channel_max", "frame_max", "auth_mechanism",
	"certfile", "keyfile", "cacertfile", "server_name_indication"}

var amqpParams = append(slices.Clone(subscriberParams),
	param{"prefetch", "an integer from 1 to 65535", intParam(1, 65535, func(s *spec, n int) { s.prefetch = n })},
	param{"shards", fmt.Sprintf("an integer from 1 to %d", amqp.ShardBuckets), intParam(1, amqp.ShardBuckets, func(s *spec, n int) { s.shards = n })},
	param{"competing", "true or false (competing consumers: one queue per group)", boolParam(func(s *spec, b bool) { s.competing = b })},
	param{"quorum", "true or false (quorum queues)", boolParam(func(s *spec, b bool) { s.quorum = b })},
	param{"exchange_kind", "topic, fanout or direct", func(s *spec, v string) string {
		switch v {
		case amqp.ExchangeTopic, amqp.ExchangeFanout, amqp.ExchangeDirect:
			s.exchangeKind = v
			return ""
		}
		return "not topic, fanout or direct"
	}},
	param{"key_header", "a header name", func(s *spec, v string) string {
		if v == "" || len(v) > 255 {
			return "not 1 to 255 bytes"
		}
		s.keyHeader = v
		return ""
	}},
	param{"max_payload", "an integer from 1 to 536870912 (bytes)", intParam(1, 512<<20, func(s *spec, n int) { s.maxPayload = n })},
	param{"publish_channels", "an integer from 1 to 64", intParam(1, 64, func(s *spec, n int) { s.pubChannels = n })},
	param{"dial_timeout", "a positive duration such as 10s", durParam(false, func(s *spec, d time.Duration) { s.dialTimeout = d })},
	param{"reconnect_initial", "a positive duration, at most reconnect_max", durParam(false, func(s *spec, d time.Duration) { s.reconnectLo = d })},
	param{"reconnect_max", "a positive duration, at least reconnect_initial", durParam(false, func(s *spec, d time.Duration) { s.reconnectHi = d })},
	param{"group_heartbeat", "a duration from 10ms to 1m", func(s *spec, v string) string {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond || d > time.Minute {
			return "not a duration from 10ms to 1m"
		}
		s.groupHeartbeat = d
		return ""
	}},
	param{"declare_groups", "a comma-separated list of group names", func(s *spec, v string) string {
		gs := strings.Split(v, ",")
		if slices.Contains(gs, "") {
			return "a group name is empty"
		}
		s.declareGroups = gs
		return ""
	}},
)

func intParam(lo, hi int, f func(*spec, int)) func(*spec, string) string {
	return func(s *spec, v string) string {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Sprintf("not an integer from %d to %d", lo, hi)
		}
		f(s, n)
		return ""
	}
}

func durParam(zeroOK bool, f func(*spec, time.Duration)) func(*spec, string) string {
	return func(s *spec, v string) string {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return "not a duration (such as 500ms, 10s or 1m30s)"
		case d < 0 || d == 0 && !zeroOK:
			if zeroOK {
				return "negative"
			}
			return "not positive"
		}
		f(s, d)
		return ""
	}
}

func boolParam(f func(*spec, bool)) func(*spec, string) string {
	return func(s *spec, v string) string {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "not true or false"
		}
		f(s, b)
		return ""
	}
}

// paramsOf returns the parameters of a scheme (lower case), nil for an
// unknown one.
func paramsOf(scheme string) []param {
	switch scheme {
	case SchemeKafka:
		return kafkaParams
	case SchemeAMQP, SchemeAMQPS:
		return amqpParams
	case SchemeInmem:
		return inmemParams
	}
	return nil
}

// Params returns the names of the query parameters the scheme ("kafka",
// "amqp", "amqps" or "inmem") accepts, sorted; nil for another scheme.
// For amqp and amqps they include amqp091's own URI parameters
// (heartbeat, connection_timeout, ...), which are passed on to the client.
func Params(scheme string) []string {
	ps := paramsOf(strings.ToLower(scheme))
	if ps == nil {
		return nil
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.name)
	}
	if s := strings.ToLower(scheme); s == SchemeAMQP || s == SchemeAMQPS {
		names = append(names, amqpNative...)
	}
	slices.Sort(names)
	return names
}

// parseSpec checks the query of r against the parameters of its scheme.
func parseSpec(r *rawURL) (*spec, error) {
	ps := paramsOf(r.scheme)
	s := &spec{}
	keys := make([]string, 0, len(r.query))
	for k := range r.query {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad parameter in name order: stable errors
	for _, k := range keys {
		v := r.query.Get(k)
		if (r.scheme == SchemeAMQP || r.scheme == SchemeAMQPS) && slices.Contains(amqpNative, k) {
			s.native = append(s.native, k)
			continue
		}
		i := slices.IndexFunc(ps, func(p param) bool { return p.name == k })
		if i < 0 {
			return nil, invalid("%s: unknown parameter %q for %s://; known: %s", r.shown, k, r.scheme, strings.Join(Params(r.scheme), ", "))
		}
		if why := ps[i].set(s, v); why != "" {
			return nil, invalid("%s: parameter %s=%q is %s; want %s", r.shown, k, v, why, ps[i].want)
		}
	}
	// Checks across parameters, against the adapters' defaults for the
	// one not given.
	lo, hi := s.redeliveryLo, s.redeliveryHi
	if lo > 0 || hi > 0 {
		if lo == 0 {
			lo = min(hi, adapter.DefaultInitialBackoff)
		}
		if hi == 0 {
			hi = max(lo, adapter.DefaultMaxBackoff)
		}
		if lo > hi {
			return nil, invalid("%s: redelivery_initial=%v is more than redelivery_max=%v", r.shown, lo, hi)
		}
		s.redeliveryLo, s.redeliveryHi = lo, hi
	}
	if lo, hi := s.reconnectLo, s.reconnectHi; lo > 0 || hi > 0 {
		if lo == 0 {
			lo = min(hi, amqp.DefaultInitialBackoff)
		}
		if hi == 0 {
			hi = max(lo, amqp.DefaultMaxBackoff)
		}
		if lo > hi {
			return nil, invalid("%s: reconnect_initial=%v is more than reconnect_max=%v", r.shown, lo, hi)
		}
		s.reconnectLo, s.reconnectHi = lo, hi
	}
	if s.maxPending > 0 && s.concurrency > s.maxPending {
		return nil, invalid("%s: max_pending=%d is less than concurrency=%d", r.shown, s.maxPending, s.concurrency)
	}
	if s.createTopics != nil && !*s.createTopics && (s.partitions > 0 || s.haveReplication) {
		return nil, invalid("%s: create_topics=false with partitions or replication: those set how topics are created", r.shown)
	}
	return s, nil
}
