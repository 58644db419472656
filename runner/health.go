package runner

import (
	"encoding/json"
	"net/http"
)

// Status is a snapshot of a Runner, as the HTTP handlers report it.
type Status struct {
	// Ready: Run is running, not stopping, and every subscription is
	// consuming.
	Ready bool `json:"ready"`
	// Healthy: no subscription failed, the drain deadline did not pass,
	// and Run has not returned. True before Run and while draining.
	Healthy bool `json:"healthy"`
	// Error is the first failure, "" when none.
	Error string `json:"error,omitempty"`
	// Subscriptions are in the order they were added.
	Subscriptions []SubscriptionStatus `json:"subscriptions"`
}

// SubscriptionStatus is one subscription's part of a Status.
type SubscriptionStatus struct {
	Name string `json:"name"`
	// Topic is "" for a task (Go).
	Topic string `json:"topic,omitempty"`
	State State  `json:"state"`
	// Error is why it failed, "" when it did not.
	Error string `json:"error,omitempty"`
}

// Status returns the runner's state now.
func (r *Runner) Status() Status {
	if r == nil {
		return Status{Error: "runner: a nil Runner (use New)"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{
		Ready:   r.phase == running && r.nReady == r.nSubs,
		Healthy: r.failure == nil && r.phase != done,
	}
	if r.failure != nil {
		st.Error = r.failure.Error()
	}
	for _, s := range r.subs {
		ss := SubscriptionStatus{Name: s.name, Topic: s.topic, State: s.state}
		if s.err != nil {
			ss.Error = s.err.Error()
		}
		st.Subscriptions = append(st.Subscriptions, ss)
	}
	return st
}

// ReadyHandler answers a readiness probe: 200 when Status().Ready, 503
// otherwise (before every subscription consumes, and from the start of a
// stop), with the Status as JSON.
func (r *Runner) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := r.Status()
		write(w, st, st.Ready)
	})
}

// HealthHandler answers a liveness probe: 200 while Status().Healthy, 503
// once a subscription failed, the drain deadline passed, or Run returned,
// with the Status as JSON. It stays 200 while a graceful stop drains, so a
// probe does not kill a service finishing its handlers.
func (r *Runner) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := r.Status()
		write(w, st, st.Healthy)
	})
}

// Handler serves HealthHandler at /healthz and ReadyHandler at /readyz
// (404 elsewhere), what WithHTTP serves.
func (r *Runner) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz", r.HealthHandler())
	mux.Handle("/readyz", r.ReadyHandler())
	return mux
}

func write(w http.ResponseWriter, st Status, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(st)
}
