package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRecordPoolSizes(t *testing.T) {
	p := &recordPool{}
	for _, n := range []int{0, 1, 2, 3, 500, 1024, 1025} {
		rs := p.GetRecords(n)
		if len(rs) != 0 || cap(rs) < n {
			t.Fatalf("GetRecords(%d): len %d cap %d", n, len(rs), cap(rs))
		}
		p.PutRecords(rs[:cap(rs)])
	}
	p.PutRecords(make([]kgo.Record, 3)) // not a power of two: dropped, no panic
	if rs := p.GetRecords(3); cap(rs) != 4 {
		t.Fatalf("GetRecords(3) gave capacity %d, want a pooled or new 4", cap(rs))
	}
}

type decompressPool struct{}

func (decompressPool) GetDecompressBytes([]byte, kgo.CompressionCodecType) []byte { return nil }
func (decompressPool) PutDecompressBytes([]byte)                                  {}

// Records are not recycled when the user pools decompressed data: message
// payloads point into it.
func TestRecyclableUnlessDecompressedDataIsPooled(t *testing.T) {
	plain, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.WithPools(records))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !recyclable(plain) {
		t.Fatal("a client with only the record pool is not recyclable")
	}
	user, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.WithPools(records), kgo.WithPools(decompressPool{}))
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	if recyclable(user) {
		t.Fatal("records recycled although the user pools decompressed bytes")
	}
}
