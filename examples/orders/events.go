package main

import (
	"fmt"
	"strings"
	"time"
)

// OrderPlaced is the event the order service publishes, as JSON, keyed by
// customer ID (the tutorial's OrderPlacedEvent record).
type OrderPlaced struct {
	OrderID    string    `json:"orderId"`
	CustomerID string    `json:"customerId"`
	Seq        int       `json:"seq"` // the customer's 1st, 2nd, ... order
	Items      []Item    `json:"items"`
	TotalCents int64     `json:"totalCents"`
	PlacedAt   time.Time `json:"placedAt"`
}

// Item is one line of an order.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// eventID is the message ID of an order's OrderPlaced event. Deriving it from
// the order makes a producer retry (the same event sent twice) carry the
// same ID, which is what the consumers' dedupe recognises.
func eventID(orderID string) string { return "OrderPlaced/" + orderID }

// catalog is what the shop sells, with prices in cents.
var catalog = map[string]int64{
	"BOOK-GO":    3999,
	"MUG-GOPHER": 1450,
	"TSHIRT-M":   2200,
	"STICKERS":   399,
	"KEYBOARD":   8900,
}

// discontinued is in an old client's cache but no longer in the
// warehouse: the inventory service cannot reserve it. The order that
// contains it is the poison message of the story.
const discontinued = "LAMP-RETRO"

var (
	customers = []string{"alice", "bob", "carol", "dave", "erin"}
	skus      = []string{"BOOK-GO", "MUG-GOPHER", "TSHIRT-M", "STICKERS", "KEYBOARD"}
)

const (
	ordersPerCustomer = 4
	poisonOrder       = "o-1013" // carol's 3rd order
	duplicatedOrder   = "o-1007" // bob's 2nd order, sent twice
)

// placeOrders returns the orders of the story in the order they are
// placed: customers take turns, so each customer's orders are spread over
// the stream, and per-customer order is something the consumers must keep.
func placeOrders(now time.Time) []OrderPlaced {
	var out []OrderPlaced
	for i := range len(customers) * ordersPerCustomer {
		o := OrderPlaced{
			OrderID:    fmt.Sprintf("o-%d", 1001+i),
			CustomerID: customers[i%len(customers)],
			Seq:        i/len(customers) + 1,
			PlacedAt:   now,
		}
		o.Items = []Item{
			{SKU: skus[i%len(skus)], Quantity: 1 + i%3},
			{SKU: skus[(i+1+i/len(skus)%(len(skus)-1))%len(skus)], Quantity: 1}, // never the first line's SKU
		}
		if o.OrderID == poisonOrder {
			o.Items[1] = Item{SKU: discontinued, Quantity: 1}
		}
		for _, it := range o.Items {
			o.TotalCents += catalog[it.SKU] * int64(it.Quantity)
		}
		out = append(out, o)
	}
	return out
}

func (o OrderPlaced) String() string {
	var items []string
	for _, it := range o.Items {
		items = append(items, fmt.Sprintf("%d×%s", it.Quantity, it.SKU))
	}
	return fmt.Sprintf("%s for %s (#%d): %s, %s", o.OrderID, o.CustomerID, o.Seq, strings.Join(items, " "), dollars(o.TotalCents))
}

func dollars(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }
