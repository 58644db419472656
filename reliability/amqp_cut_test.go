package reliability_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
)

var fastReconnect = amqp.WithReconnectBackoff(10*time.Millisecond, 300*time.Millisecond)

// amqpTarget returns host:port of an AMQP URL.
func amqpTarget(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "5672")
	}
	return u
}

// viaProxy returns the URL of the broker through p.
func viaProxy(u *url.URL, p *testenv.Proxy) string {
	v := *u
	v.Host = p.Addr()
	return v.String()
}

// deleteAMQP removes an exchange and queues at the end of the test.
func deleteAMQP(t *testing.T, rawURL, exchange string, queues ...string) {
	t.Cleanup(func() { deleteOn([]string{rawURL}, []string{exchange}, queues) })
}

// deleteOn deletes queues and exchanges through the first of urls that
// answers (a cluster's nodes share them), ignoring errors.
func deleteOn(urls, exchanges, queues []string) {
	for _, u := range urls {
		c, err := amqp091.Dial(u)
		if err != nil {
			continue
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			continue
		}
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, e := range exchanges {
			if strings.TrimSpace(e) != "" {
				_ = ch.ExchangeDelete(e, false, false)
			}
		}
		return
	}
}

// TestAMQPConnectionCuts severs the publisher's and the subscriber's
// connections repeatedly, then holds the broker unreachable for a while,
// through a TCP proxy, while four goroutines publish and a group consumes:
// every confirmed message must be consumed.
func TestAMQPConnectionCuts(t *testing.T) {
	raw := testenv.NeedAMQP(t)
	u := amqpTarget(t, raw)
	px := testenv.NewProxy(t, u.Host)
	purl := viaProxy(u, px)
	topic := name("rel_amqp_cuts")
	deleteAMQP(t, raw, topic, topic+".g")

	pub, err := amqp.NewPublisher(purl, fastReconnect)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := amqp.NewSubscriber(purl, fastReconnect, amqp.WithGroup("g"), amqp.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Declare(context.Background(), topic); err != nil {
		t.Fatal(err)
	}

	l := newLedger()
	sb := subscribe(context.Background(), sub, topic, l.handle)
	stop := publishLoop(pub, topic, "a", 4, 5*time.Second, l, func(i int) string { return fmt.Sprint(i % 64) })
	defer stop()

	const cuts = 6
	for range cuts {
		l.waitAckedAtLeast(t, l.ackedCount()+150, 60*time.Second)
		px.Cut()
	}
	// An outage longer than a publish's patience: some calls time out.
	l.waitAckedAtLeast(t, l.ackedCount()+150, 60*time.Second)
	px.Down()
	outage := time.NewTimer(6 * time.Second)
	<-outage.C
	px.Up()
	l.waitAckedAtLeast(t, l.ackedCount()+300, 60*time.Second)
	stop()

	lost := l.waitAcked(2 * time.Minute)
	sb.running(t)
	sb.stop(t)
	r := l.result()
	r.Fault, r.Adapter = "connection cuts", "amqp"
	r.Injection = fmt.Sprintf("TCP proxy: %d cuts of every connection, then a 6 s outage (connections refused), while 4 publishers (5 s per call) and a 4-handler group run", cuts)
	report(t, r, lost)
}
