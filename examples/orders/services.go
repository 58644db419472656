package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// The consumer groups: each receives every event, as the tutorial's
// @KafkaListener(groupId = ...) consumers do.
const (
	notificationGroup = "notification-service"
	inventoryGroup    = "inventory-service"
	analyticsGroup    = "analytics-service"
	dltGroup          = "dlt-monitor"
)

// orderEvents is the payload codec of order-events: OrderPlaced in JSON.
// The services' handlers are typed (codec.Handler): a payload that is not
// an OrderPlaced never reaches them, and the retry middleware sends it to
// the dead-letter topic after one attempt (a *codec.DecodeError is
// permanent).
var orderEvents = codec.JSON[OrderPlaced]()

// notifyOrder is the notification service: it "emails" an order
// confirmation. story.notify is its message.Handler.
func (s *story) notifyOrder(ctx context.Context, o OrderPlaced, _ *message.Message) error {
	s.handled(notificationGroup, o, "emailed %s: order %s confirmed, %s", o.CustomerID, o.OrderID, dollars(o.TotalCents))
	return nil
}

// inventory is the inventory service: it reserves stock for each line of
// the order, or fails when a SKU is not stocked.
type inventory struct {
	reserve message.Handler // reserveOrder, typed

	mu    sync.Mutex
	stock map[string]int
	story *story
}

func newInventory(s *story) *inventory {
	inv := &inventory{stock: map[string]int{}, story: s}
	for sku := range catalog {
		inv.stock[sku] = 100
	}
	inv.reserve = codec.Handler(orderEvents, inv.reserveOrder)
	return inv
}

func (inv *inventory) reserveOrder(ctx context.Context, o OrderPlaced, _ *message.Message) error {
	inv.mu.Lock()
	for _, it := range o.Items {
		if _, ok := inv.stock[it.SKU]; !ok {
			inv.mu.Unlock()
			// A plain error: the retry middleware tries again (the SKU
			// might arrive with the next catalog sync), then gives up and
			// dead-letters the order.
			return fmt.Errorf("cannot reserve %s: unknown SKU %q", o.OrderID, it.SKU)
		}
	}
	for _, it := range o.Items {
		inv.stock[it.SKU] -= it.Quantity
	}
	inv.mu.Unlock()
	inv.story.handled(inventoryGroup, o, "reserved stock: %s", o)
	return nil
}

// The analytics service, a batch consumer, is in analytics.go.

// monitorDLT is the dead-letter monitor: it reports what landed on
// order-events.DLT, reading the error headers the retry middleware wrote.
func (s *story) monitorDLT(ctx context.Context, msg *message.Message) error {
	info, err := retry.ParseDeadLetter(msg)
	if err != nil {
		s.printf(dltGroup, "message %s is not a dead letter: %v", msg.ID, err)
		return nil // nothing to retry: report and move on
	}
	s.mu.Lock()
	s.dltReported++
	s.mu.Unlock()
	s.printf(dltGroup, "%s from %s, group %s, %d attempts: %s",
		msg.ID, info.Topic, info.Group, info.Attempts, info.Error)
	var names []string
	for name := range msg.Headers {
		if strings.HasPrefix(name, retry.HeaderPrefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	s.printf(dltGroup, "  error headers: %s", strings.Join(names, " "))
	s.changed()
	return nil
}

// story records what the services did, prints the notable moments, and
// calls onComplete when every service has accounted for every event.
type story struct {
	// The services' typed handlers as message.Handlers.
	notify, recordOrder message.Handler

	out     io.Writer
	verbose bool
	want    int // events each consuming group must account for

	mu          sync.Mutex
	notified    int
	reserved    int
	analyzed    int
	revenue     int64
	deadLetters map[string]int // group -> messages dead-lettered
	dltReported int
	skips       map[string]int                 // group -> duplicates skipped
	outOfOrder  int                            // a customer's order handled after a later one
	lastSeq     map[string]map[string]int      // group -> customer -> last seq handled
	sequence    map[string]map[string][]string // group -> customer -> order IDs, in handled order
	onComplete  func()                         // called once, when every service has accounted for every event
	isComplete  bool
}

func newStory(out io.Writer, verbose bool, want int) *story {
	s := &story{
		out: out, verbose: verbose, want: want,
		skips:       map[string]int{},
		deadLetters: map[string]int{},
		lastSeq:     map[string]map[string]int{},
		sequence:    map[string]map[string][]string{},
		onComplete:  func() {},
	}
	s.notify = codec.Handler(orderEvents, s.notifyOrder)
	s.recordOrder = codec.Handler(orderEvents, s.record)
	return s
}

// printf prints one line of the story, prefixed with the service name.
func (s *story) printf(service, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "%-21s %s\n", service, fmt.Sprintf(format, args...))
}

// handled records that group processed order o, checking per-customer order.
func (s *story) handled(group string, o OrderPlaced, format string, args ...any) {
	if s.verbose {
		s.printf(group, format, args...)
	}
	s.mu.Lock()
	if s.lastSeq[group] == nil {
		s.lastSeq[group] = map[string]int{}
		s.sequence[group] = map[string][]string{}
	}
	if o.Seq < s.lastSeq[group][o.CustomerID] {
		s.outOfOrder++
	}
	s.lastSeq[group][o.CustomerID] = o.Seq
	s.sequence[group][o.CustomerID] = append(s.sequence[group][o.CustomerID], o.OrderID)
	switch group {
	case notificationGroup:
		s.notified++
	case inventoryGroup:
		s.reserved++
	case analyticsGroup:
		s.analyzed++
		s.revenue += o.TotalCents
	}
	s.mu.Unlock()
	s.changed()
}

func (s *story) skipped(group, key string) {
	s.printf(group, "skipped %s: already processed (a duplicate)", key)
	s.mu.Lock()
	s.skips[group]++
	s.mu.Unlock()
	s.changed()
}

// onRetry and onDeadLetter are the retry middleware's hooks.
func (s *story) onRetry(_ context.Context, ev retry.RetryEvent) {
	s.printf(ev.Message.Delivery.Group, "%s attempt %d of %d failed: %v (retrying)",
		ev.Message.ID, ev.Attempt, maxAttempts, ev.Err)
}

func (s *story) onDeadLetter(_ context.Context, ev retry.DeadLetterEvent) {
	if ev.PublishErr != nil {
		s.printf(ev.Message.Delivery.Group, "%s could not be dead-lettered (it will be redelivered): %v", ev.Message.ID, ev.PublishErr)
		return
	}
	s.printf(ev.Message.Delivery.Group, "%s attempt %d of %d failed: %v; gave up, sent to %s",
		ev.Message.ID, ev.Attempts, maxAttempts, ev.Err, ev.Topic)
	s.mu.Lock()
	s.deadLetters[ev.Message.Delivery.Group]++
	s.mu.Unlock()
	s.changed()
}

// changed calls onComplete once every group has accounted for every event:
// handled, skipped as a duplicate or dead-lettered (and the dead letter
// reported by the monitor).
func (s *story) changed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isComplete {
		return
	}
	if s.accounted(notificationGroup) >= s.want &&
		s.accounted(inventoryGroup) >= s.want &&
		s.accounted(analyticsGroup) >= s.want &&
		s.dltReported >= s.deadLettersTotal() {
		s.isComplete = true
		s.onComplete()
	}
}

// accounted is how many events group handled, skipped or dead-lettered.
func (s *story) accounted(group string) int {
	n := s.skips[group] + s.deadLetters[group]
	switch group {
	case notificationGroup:
		n += s.notified
	case inventoryGroup:
		n += s.reserved
	case analyticsGroup:
		n += s.analyzed
	}
	return n
}

func (s *story) deadLettersTotal() int {
	n := 0
	for _, v := range s.deadLetters {
		n += v
	}
	return n
}

// progress says how far each service got, for the timeout message.
func (s *story) progress() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%s %d/%d, %s %d/%d, %s %d/%d, %s %d/%d",
		notificationGroup, s.accounted(notificationGroup), s.want,
		inventoryGroup, s.accounted(inventoryGroup), s.want,
		analyticsGroup, s.accounted(analyticsGroup), s.want,
		dltGroup, s.dltReported, s.deadLettersTotal())
}

// recap prints, per customer, the orders each service handled, in the
// order it handled them: the evidence that per-key order held.
func (s *story) recap(placed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.out, "per customer, in the order each service handled them:")
	names := make([]string, 0, len(customers))
	names = append(names, customers...)
	sort.Strings(names)
	for _, c := range names {
		fmt.Fprintf(s.out, "  %-6s notified %-27s reserved %s\n", c,
			strings.Join(s.sequence[notificationGroup][c], " "),
			strings.Join(s.sequence[inventoryGroup][c], " "))
	}
	skipped := s.skips[notificationGroup] + s.skips[inventoryGroup] + s.skips[analyticsGroup]
	fmt.Fprintf(s.out, "summary: placed=%d published=%d notified=%d reserved=%d dead-lettered=%d dlt-reported=%d duplicates-skipped=%d out-of-order=%d analytics-orders=%d analytics-revenue=%s\n",
		placed, s.want, s.notified, s.reserved, s.deadLettersTotal(), s.dltReported, skipped, s.outOfOrder, s.analyzed, dollars(s.revenue))
}
