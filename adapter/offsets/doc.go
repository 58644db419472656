// Package offsets tracks which offsets of a partition are settled, so an
// adapter commits only a contiguous settled prefix: settlements arrive out
// of order across keys, and a commit must never skip an unsettled offset.
package offsets
