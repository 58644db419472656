package main

import (
	"context"
	"io"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// analyticsBatch is the analytics service as a batch consumer, like the
// seed's @KafkaListener taking a List<OrderPlacedEvent>: it records a
// batch of orders in one call (a real service would write them in one
// database round trip). A batch never holds two running batches' worth of
// one customer, and a customer's orders come in order, so the revenue per
// customer is computed in order. An event that cannot be decoded fails by
// itself (message.BatchError): the others of the batch settle, and the
// failed one is retried and dead-lettered on its own.
// record is the work on each event of a batch, wrapped in the tracing
// middleware (-trace: a process span per event, as for the other
// services).
func (s *story) analyticsBatch(record message.Handler) message.BatchHandler {
	return func(ctx context.Context, msgs []*message.Message) error {
		var be message.BatchError
		for i, msg := range msgs {
			if err := record(ctx, msg); err != nil {
				be.Fail(i, err)
			}
		}
		return be.Err()
	}
}

// record records one order for analytics; story.recordOrder is its
// message.Handler.
func (s *story) record(_ context.Context, o OrderPlaced, _ *message.Message) error {
	s.handled(analyticsGroup, o, "recorded %s", o)
	return nil
}

// analyticsHandler is the analytics service's batch handler, for
// batches of up to 16 events handed over 20 ms after the first event of a
// batch arrived at the latest (analyticsBatchOptions), with the same error
// policy as the other services (retry.NewBatch with policy's options:
// per-event attempts and dead-lettering) and its own dedupe store
// (dedupe.NewBatch: duplicates are removed from the batch, closed with
// the returned closer); trace wraps the work on each event.
func analyticsHandler(policy []retry.Option, trace message.Middleware, st *story) (message.BatchHandler, io.Closer, error) {
	retryMW, err := retry.NewBatch(policy...)
	if err != nil {
		return nil, nil, err
	}
	store, err := dedupe.NewMemoryStore()
	if err != nil {
		return nil, nil, err
	}
	dedupeMW, err := dedupe.NewBatch(store, dedupe.WithOnDuplicate(func(_ context.Context, _ *message.Message, key string) {
		st.skipped(analyticsGroup, key)
	}))
	if err != nil {
		return nil, nil, err
	}
	return message.ChainBatch(st.analyticsBatch(message.Chain(st.recordOrder, trace)), retryMW, dedupeMW), store, nil
}

var analyticsBatchOptions = []message.BatchOption{message.WithBatchMaxMessages(16), message.WithBatchMaxWait(20 * time.Millisecond)}
