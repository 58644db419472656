package examples_test

import (
	"regexp"
	"testing"
)

// TestOrdersTrace: orders -trace prints the poison order's spans with the
// OpenTelemetry stdout exporter: its send span, a process span per
// service and attempt with the retries and the dead-lettering, the
// dead-letter send and the dlt-monitor's process span; the summary stays
// the same.
func TestOrdersTrace(t *testing.T) {
	out := ok(t, "orders", "-trace")
	mustMatch(t, out,
		regexp.QuoteMeta(ordersSummary),
		`trace: the 8 spans of OrderPlaced/o-1013 \(OpenTelemetry stdout exporter\):`,
		`\s*"Name": "send order-events",`,
		`\s*"Name": "process order-events",`,
		`\s*"Name": "ferry.retry",`,
		`\s*"Name": "ferry.dead_lettered",`,
		`\s*"Description": "dead-lettered to order-events.DLT: cannot reserve o-1013: unknown SKU \\"LAMP-RETRO\\""`,
		`\s*"Name": "send order-events.DLT",`,
		`\s*"Name": "process order-events.DLT",`,
		`\s*"Value": "dlt-monitor"`,
	)
}
