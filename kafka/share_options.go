package kafka

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymsg/ferry/message"
)

// Share-group defaults (see the package doc, "Share groups").
const (
	// DefaultShareRecordsPerConcurrency sizes how many records a share
	// group Subscribe call acquires in one round of polls when
	// WithMaxPending is not given: this many per WithConcurrency worker,
	// and at least DefaultShareMinRecords.
	DefaultShareRecordsPerConcurrency = 16
	// DefaultShareMinRecords is the least a round of polls acquires by
	// default (WithMaxPending not given).
	DefaultShareMinRecords = 32
)

// WithShareGroup makes the Subscriber a member of the Kafka share group
// name (KIP-932, "queues for Kafka") instead of a consumer group: every
// member of the group receives records of every partition, so a group
// can have more busy members than the topic has partitions, and each
// record is acknowledged on its own (accept, release or reject) with a
// delivery count kept by the broker. There is no per-key order. The name
// is a non-empty UTF-8 string; it replaces WithGroup's. It needs Kafka
// 4.2 or newer with share groups enabled (feature share.version >= 1).
// See the package doc, "Share groups", for what changes. Subscriber
// only. Default: off (a consumer group).
func WithShareGroup(name string) SubscriberOption {
	return subOpt(func(c *config) error {
		if name == "" {
			return invalid("WithShareGroup(%q): the group name is empty", name)
		}
		if !utf8.ValidString(name) {
			return invalid("WithShareGroup(%q): the group name is not valid UTF-8", name)
		}
		c.Group = name
		c.share = true
		return nil
	})
}

// shareMaxRecords is how many records a member acquires in one poll.
func (c *config) shareMaxRecords() int {
	if c.haveMaxPending {
		return c.MaxPending
	}
	return min(max(c.Concurrency*DefaultShareRecordsPerConcurrency, DefaultShareMinRecords), c.MaxPending)
}

// permanent reports whether a handler error says the message can never
// be handled, so that a share group rejects it instead of releasing it:
// an error in err's chain with a method Permanent() bool that returns
// true (retry.Permanent's *retry.PermanentError has one; so can a codec's
// decode error), or github.com/cenkalti/backoff/v4's *PermanentError. The
// kafka package does not import retry: the method is the contract.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		return true
	}
	var be *backoff.PermanentError
	return errors.As(err, &be)
}

// checkShareSupport fails with a clear error when the cluster cannot run
// share groups: no ShareGroupHeartbeat API, or the share.version feature
// finalized below 1 (a cluster upgraded to 4.x without enabling it).
func checkShareSupport(ctx context.Context, cl *kgo.Client, group string) error {
	req := kmsg.NewPtrApiVersionsRequest()
	req.ClientSoftwareName = "ferry"
	req.ClientSoftwareVersion = "1"
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("kafka: share group %q: check the broker's share group support: %w", group, err)
	}
	hasAPI := false
	for _, k := range resp.ApiKeys {
		if k.ApiKey == kmsg.ShareGroupHeartbeat.Int16() {
			hasAPI = true
		}
	}
	if !hasAPI {
		return fmt.Errorf("kafka: share group %q: %w: the broker has no share group API (KIP-932 needs Kafka 4.2 or newer)", group, message.ErrInvalidConfig)
	}
	if len(resp.FinalizedFeatures) > 0 {
		level := int16(0)
		for _, f := range resp.FinalizedFeatures {
			if f.Name == "share.version" {
				level = f.MaxVersionLevel
			}
		}
		if level < 1 {
			return fmt.Errorf("kafka: share group %q: %w: share groups are disabled on the cluster (feature share.version is %d; enable them with kafka-features.sh upgrade --feature share.version=1)", group, message.ErrInvalidConfig, level)
		}
	}
	return nil
}

// setShareGroupConfig sets group configuration entries of a share group
// (IncrementalAlterConfigs on the GROUP resource), which the broker keeps
// by group name, also before the group exists.
func setShareGroupConfig(ctx context.Context, cl *kgo.Client, group string, kv map[string]string) error {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for k, v := range kv {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name = k
		c.Value = kmsg.StringPtr(v)
		c.Op = kmsg.IncrementalAlterConfigOpSet
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && len(resp.Resources) == 1 {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
		if err != nil && resp.Resources[0].ErrorMessage != nil {
			err = fmt.Errorf("%w: %s", err, *resp.Resources[0].ErrorMessage)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, kerr.InvalidConfig) || errors.Is(err, kerr.InvalidRequest) {
			err = fmt.Errorf("%w: %w", message.ErrInvalidConfig, err)
		}
		return fmt.Errorf("kafka: share group %q: set group config %v: %w", group, kv, err)
	}
	return nil
}

// checkGroupKind fails when group names an existing group of another kind
// than the member's (share: a share member; otherwise a consumer group
// member): a group ID is of one kind (a consumer group, classic or
// KIP-848, a streams group, or a share group), and a member that joins
// another kind's ID gets no records and no error from the broker, so it
// would wait forever.
func checkGroupKind(ctx context.Context, cl *kgo.Client, group string, share bool) error {
	groups, err := kadm.NewClient(cl).ListGroups(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Not fatal: without the list the member may still work.
		return nil
	}
	g, ok := groups[group]
	if !ok || g.GroupType == "" {
		return nil // no such group yet, or a broker before Kafka 3.8
	}
	switch {
	case share && g.GroupType != "share":
		return fmt.Errorf("kafka: share group %q: %w: the cluster has a %s group of that name (protocol %q); a group ID is either a consumer group or a share group: pick another name for WithShareGroup", group, message.ErrInvalidConfig, g.GroupType, g.ProtocolType)
	case !share && g.GroupType == "share":
		return fmt.Errorf("kafka: group %q: %w: the cluster has a share group of that name; a group ID is either a consumer group or a share group: pick another name for WithGroup, or subscribe with WithShareGroup(%q)", group, message.ErrInvalidConfig, group)
	}
	return nil
}
