package amqp

import "strconv"

// ShardHeader is the header that carries a message's bucket: a decimal
// string in [0, ShardBuckets), computed by ShardBucket from the message's
// Key, or from its ID when it has no Key. A group's router exchange
// sends bucket b to shard queue b mod N. Publishers in other languages can
// set it to join a ferry group's per-key order; messages without it go to
// shard 0.
const ShardHeader = "ferry-shard"

// ShardBuckets is the number of buckets a message can fall in, and so the
// largest shard count of a group (WithShards). Shard counts that divide it
// (powers of two) spread buckets evenly.
const ShardBuckets = 64

// bucketNames are the header values of the buckets, allocated once.
var bucketNames = func() [ShardBuckets]string {
	var n [ShardBuckets]string
	for i := range n {
		n[i] = strconv.Itoa(i)
	}
	return n
}()

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
