package sqlstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/sqlstore"
)

// BenchmarkClaimComplete measures the SQL stores' throughput: one Claim
// and one Complete of a new key per message (the middleware's success
// path), from 8 goroutines per CPU as a subscriber with concurrency would.
// It reports msgs/s.
//
//	FERRY_REQUIRE_BROKERS=1 go test -run '^$' -bench 'ClaimComplete' -benchtime 5s ./dedupe/sqlstore/
func BenchmarkClaimComplete(b *testing.B) {
	bes := append(backends, backend{"SQLite-synchronous-NORMAL", sqlstore.SQLite, func(t testing.TB) *sql.DB {
		db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "dedupe.db"))+"&_pragma=synchronous(NORMAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}})
	for _, be := range bes {
		b.Run(be.name, func(b *testing.B) {
			db := be.open(b)
			s := newStore(b, db)
			var next atomic.Int64
			prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					key := prefix + strconv.FormatInt(next.Add(1), 10)
					res, err := s.Claim(ctx, key, time.Minute)
					if err != nil || res.Status != dedupe.Claimed {
						b.Errorf("Claim(%s) = %v, %v", key, res.Status, err)
						return
					}
					if err := s.Complete(ctx, key); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
