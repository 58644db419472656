// Command waitkafka waits until a Kafka broker answers a metadata request.
// scripts/services.sh uses it as the readiness check of the test broker.
//
//	go run ./internal/testenv/cmd/waitkafka [-brokers 127.0.0.1:9092] [-timeout 90s] [-controller]
//
// It exits 0 once the cluster reports at least one broker and a controller,
// and 1 with the last error when the timeout passes. With -controller the
// addresses are KRaft controller listeners (a controller-only node): it
// asks DescribeCluster for the controllers (KIP-919) and waits for an
// active one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
	controller := flag.Bool("controller", false, "the addresses are controller listeners: wait for an active controller")
	flag.Parse()
	probe := probeBrokers
	if *controller {
		probe = probeController
	}

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

// probeBrokers asks for cluster metadata once, with a short per-try deadline.
func probeBrokers(parent context.Context, seeds []string) (int, error) {
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

// probeController asks a controller listener for the controllers once
// (DescribeCluster v1+ with endpoint type 2), with a short per-try
// deadline.
func probeController(parent context.Context, seeds []string) (int, error) {
	ctx, cancel := context.WithTimeout(parent, 3*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(2*time.Second))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeClusterRequest()
	req.Version = 1
	req.EndpointType = 2 // controllers
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return 0, err
	}
	if resp.ControllerID < 0 {
		return 0, errors.New("no active controller yet")
	}
	return len(resp.Brokers), nil
}
