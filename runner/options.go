package runner

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// DefaultDrainTimeout is the drain deadline when WithDrainTimeout is not
// given: 25 s, inside Kubernetes' default terminationGracePeriodSeconds
// (30 s) between SIGTERM and SIGKILL, with time left to close the clients.
const DefaultDrainTimeout = 25 * time.Second

// Option configures a Runner.
type Option func(*config) error

type config struct {
	drain    time.Duration
	signals  []os.Signal
	logger   *slog.Logger
	mw       []message.Middleware
	closers  []io.Closer
	httpAddr string
}

func defaultConfig() config {
	return config{
		drain:   DefaultDrainTimeout,
		signals: []os.Signal{os.Interrupt, syscall.SIGTERM},
		logger:  slog.Default(),
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("runner: %w: %s", message.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// WithDrainTimeout sets the drain deadline: how long a stop waits, from
// its start, for every subscription's running handlers to finish. When it
// passes, the handlers' contexts are cancelled (context.Cause is
// ErrDrainTimeout), and CloseGrace later the subscribers still running
// are closed, so that Run returns;
// what did not finish is redelivered later, never lost. It must be
// positive. Default: DefaultDrainTimeout (25 s). Give each subscriber a
// drain timeout of its own (the adapters' WithDrainTimeout, 30 s by
// default) at least as long, so that this one deadline is the one that
// applies.
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalid("WithDrainTimeout(%v): want a positive duration", d)
		}
		c.drain = d
		return nil
	}
}

// WithSignals sets the signals that stop Run gracefully; a second one
// during the drain acts as the drain deadline at once (the handlers'
// contexts are cancelled), a third closes the subscribers. With no
// signals, Run does not listen to any (stop it with its context). Default:
// os.Interrupt (SIGINT) and syscall.SIGTERM (what Kubernetes sends).
func WithSignals(sigs ...os.Signal) Option {
	return func(c *config) error {
		for _, s := range sigs {
			if s == nil {
				return invalid("WithSignals: a nil signal")
			}
		}
		c.signals = sigs
		return nil
	}
}

// WithLogger sets where Run logs a service's life (started, consuming,
// stopping, a failed subscription, the drain deadline). Default:
// slog.Default(). A nil logger is an error.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalid("WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMiddleware wraps the handler of every subscription, outermost first
// and outside the subscription's own chain (message.Chain order): for
// what every handler of a service gets, such as logging or tracing.
// Default: none. Nil middleware are skipped.
func WithMiddleware(mw ...message.Middleware) Option {
	return func(c *config) error {
		c.mw = append(c.mw, mw...)
		return nil
	}
}

// WithClose gives Run things to close once every subscription has
// returned and the subscribers are closed, in reverse order, such as the
// publishers the handlers and the retry middleware publish with. Default:
// none. A nil (or typed-nil) closer is an error.
func WithClose(closers ...io.Closer) Option {
	return func(c *config) error {
		for i, cl := range closers {
			if isnil.Is(cl) {
				return invalid("WithClose: closer %d is nil (%T)", i, cl)
			}
		}
		c.closers = append(c.closers, closers...)
		return nil
	}
}

// WithHTTP makes Run serve Handler (/healthz and /readyz) on addr (such as
// ":8081") for as long as it runs, for Kubernetes probes. Run fails at
// once when it cannot listen there. Default: no server; mount
// ReadyHandler and HealthHandler on a server of your own instead.
func WithHTTP(addr string) Option {
	return func(c *config) error {
		if addr == "" {
			return invalid("WithHTTP: empty address")
		}
		c.httpAddr = addr
		return nil
	}
}
