package examples_test

import (
	"strings"
	"testing"

	"github.com/ferrymsg/ferry/internal/testenv"
)

// TestCompetingConsumersShare runs competing-consumers with -share on
// Kafka: two members of a share group on a one-partition topic, where a
// consumer group would leave one idle, both get jobs and each job is
// handled once.
func TestCompetingConsumersShare(t *testing.T) {
	url := "kafka://" + strings.Join(testenv.NeedKafka(t), ",")
	out := ok(t, "competing-consumers", "-broker", url, "-share")
	m := mustMatch(t, out, `mode: share group thumbnailer, topic with 1 partition`,
		`result: published=(\d+) member-1=(\d+) member-2=(\d+) total=(\d+) overlap=0`)
	published, m1, m2, total := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[3]), atoi(t, m[4])
	if published < 200 || m1 == 0 || m2 == 0 || total != published {
		t.Errorf("published=%d member-1=%d member-2=%d total=%d: want both members busy on one partition and every job handled once", published, m1, m2, total)
	}
	// -share is Kafka's: elsewhere the example says so and fails.
	if r := run(t, "competing-consumers", "-share", "-timeout", exampleTimeout); r.code == 0 || !strings.Contains(r.stderr, "-share needs a kafka:// broker") {
		t.Errorf("-share on inmem: exit %d, stderr %q; want a failure naming kafka://", r.code, r.stderr)
	}
}
