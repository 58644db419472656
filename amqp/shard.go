package amqp

import "strconv"

// ShardHeaderPrefix starts the header that carries a message's bucket: a
// message in bucket b (ShardBucket of its Key, or of its ID when it has no
// Key) carries the header "ferry-shard-<b>" with the value "1". A group's
// router exchange sends shard i the buckets b with b mod N = i, with one
// binding per shard (x-match any over that shard's header names), so
// routing costs N bindings per message, not ShardBuckets. Publishers in
// other languages can set the header to join a ferry group's per-key
// order; messages without it go to shard 0.
const ShardHeaderPrefix = "ferry-shard-"

// ShardBuckets is the number of buckets a message can fall in, and so the
// largest shard count of a group (WithShards). Shard counts that divide it
// (powers of two) spread buckets evenly.
const ShardBuckets = 64

// bucketHeaders are the header names of the buckets, allocated once.
var bucketHeaders = func() [ShardBuckets]string {
	var n [ShardBuckets]string
	for i := range n {
		n[i] = ShardHeaderPrefix + strconv.Itoa(i)
	}
	return n
}()

// ShardHeader returns the name of the header that marks a message of
// bucket b (0 <= b < ShardBuckets).
func ShardHeader(b int) string { return bucketHeaders[b%ShardBuckets] }

// ShardBucket returns the bucket of a message with the given ordering key
// (the message ID for a message without a Key): the 32-bit FNV-1a hash of
// the key's bytes, modulo ShardBuckets.
func ShardBucket(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % ShardBuckets)
}

// shardKey is what a message's bucket is computed from.
func shardKey(key, id string) string {
	if key != "" {
		return key
	}
	return id
}
