package kafka

import (
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordPool lets franz-go decode fetched records into recycled arrays
// (kgo.PoolRecords). The subscriber copies what it needs out of each record
// as it builds the message and then recycles the record; once every record
// of a fetched batch is recycled, franz-go puts the batch's array back here.
// Message payloads point into franz-go's decompressed data, which is not
// pooled, so a handler may keep them.
type recordPool struct {
	// buckets[k] holds arrays with capacity 1<<k.
	buckets [40]sync.Pool
}

var records = &recordPool{}

var _ kgo.PoolRecords = (*recordPool)(nil)

// GetRecords returns an empty array with capacity at least n.
func (p *recordPool) GetRecords(n int) []kgo.Record {
	k := bits.Len(uint(max(n, 1) - 1))
	if k >= len(p.buckets) {
		return make([]kgo.Record, 0, n)
	}
	if v, ok := p.buckets[k].Get().(*[]kgo.Record); ok {
		return (*v)[:0]
	}
	return make([]kgo.Record, 0, 1<<k)
}

// PutRecords keeps an array franz-go is done with (its records are zeroed).
func (p *recordPool) PutRecords(rs []kgo.Record) {
	c := cap(rs)
	k := bits.Len(uint(c)) - 1
	if c == 0 || c != 1<<k || k >= len(p.buckets) {
		return // not one of ours: let the garbage collector have it
	}
	rs = rs[:0]
	p.buckets[k].Put(&rs)
}

// recyclable reports whether the subscriber may recycle records: not when
// the client also pools decompressed data (a kgo.PoolDecompressBytes given
// through WithClientOptions), because message payloads point into it.
func recyclable(cl *kgo.Client) bool {
	pools, _ := cl.OptValue(kgo.WithPools).([]kgo.Pool)
	for _, p := range pools {
		if _, ok := p.(kgo.PoolDecompressBytes); ok {
			return false
		}
	}
	return true
}
