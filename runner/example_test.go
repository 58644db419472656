package runner_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/runner"
)

// Two services on one topic, run as one: Run returns after a graceful
// drain when ctx is cancelled (or on SIGINT/SIGTERM).
func Example() {
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	billing, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"))
	shipping, _ := inmem.NewSubscriber(b, inmem.WithGroup("shipping"))

	r, err := runner.New(runner.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	handled := make(chan string, 2)
	h := func(ctx context.Context, m *message.Message) error {
		handled <- fmt.Sprintf("%s handled %s", m.Delivery.Group, m.Payload)
		return nil
	}
	_ = r.Add("billing", billing, "orders", h)
	_ = r.Add("shipping", shipping, "orders", h)
	go func() {
		<-r.Ready() // every subscription consumes
		_ = pub.Publish(ctx, "orders", &message.Message{Payload: []byte("o-1")})
		got := []string{<-handled, <-handled}
		if got[0] > got[1] {
			got[0], got[1] = got[1], got[0]
		}
		fmt.Println(got[0])
		fmt.Println(got[1])
		cancel()
	}()
	fmt.Println("Run:", r.Run(ctx))
	// Output:
	// billing handled o-1
	// shipping handled o-1
	// Run: <nil>
}

// The probes, mounted on a server of your own (or WithHTTP).
func ExampleRunner_ReadyHandler() {
	r, _ := runner.New()
	mux := http.NewServeMux()
	mux.Handle("/readyz", r.ReadyHandler())
	mux.Handle("/healthz", r.HealthHandler())

	for _, path := range []string{"/readyz", "/healthz"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		fmt.Println(path, rec.Code)
	}
	// Output:
	// /readyz 503
	// /healthz 200
}
