// Package dedupetest is the contract suite every dedupe.Store must pass.
// Each store's tests call RunStoreTests with a constructor, so the memory,
// SQLite and PostgreSQL stores are held to the same behaviour:
//
//	func TestStore(t *testing.T) {
//		dedupetest.RunStoreTests(t, func(t *testing.T, cfg dedupetest.Config) dedupe.Store {
//			s, err := dedupe.NewMemoryStore(dedupe.WithClock(cfg.Now), dedupe.WithTTL(cfg.TTL))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package dedupetest
