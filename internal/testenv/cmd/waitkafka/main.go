// Command waitkafka waits until a Kafka broker answers a metadata request.
// scripts/services.sh uses it as the readiness check of the test broker.
//
//	go run ./internal/testenv/cmd/waitkafka [-brokers 127.0.0.1:9092] [-timeout 90s]
//
// It exits 0 once the cluster reports at least one broker and a controller,
// and 1 with the last error when the timeout passes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	def := os.Getenv("FERRY_KAFKA_BROKERS")
	if def == "" {
		def = "127.0.0.1:9092"
	}
	brokers := flag.String("brokers", def, "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	var last error
	for {
		n, err := probe(ctx, strings.Split(*brokers, ","))
		if err == nil {
			if !*quiet {
				fmt.Printf("kafka at %s ready: %d broker(s), after %v\n", *brokers, n, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		last = err
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "waitkafka: %s not ready after %v: %v\n", *brokers, *timeout, last)
			os.Exit(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// probe asks for cluster metadata once, with a short per-try deadline.
func probe(parent context.Context, seeds []string) (int, error) {
	ctx, cancel := context.WithTimeout(parent, 3*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(2*time.Second))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest() // nil Topics: no topics, just brokers
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if len(resp.Brokers) == 0 {
		return 0, errors.New("metadata lists no brokers")
	}
	if resp.ControllerID < 0 {
		return 0, errors.New("no active controller yet")
	}
	return len(resp.Brokers), nil
}
