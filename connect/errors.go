package connect

import (
	"errors"
	"fmt"

	"github.com/ferrymsg/ferry/message"
)

// ErrUnknownScheme is returned by Open and Parse for a URL whose scheme is
// not kafka://, amqp://, amqps:// or inmem:// (or that has no scheme). It
// comes wrapped together with message.ErrInvalidConfig.
var ErrUnknownScheme = errors.New("connect: unknown broker URL scheme")

// schemeError is the error of an unknown or missing scheme: it matches
// both ErrUnknownScheme and message.ErrInvalidConfig.
type schemeError struct{ msg string }

func (e *schemeError) Error() string { return e.msg }

func (e *schemeError) Is(target error) bool {
	return target == ErrUnknownScheme || target == message.ErrInvalidConfig
}

// forms lists the URL forms this package accepts.
const forms = "kafka://host:port[,host:port...][?param=value&...], amqp://user:pass@host:port/vhost[?...] (amqps:// for TLS) or inmem://[?...]"

// invalid returns an error wrapping message.ErrInvalidConfig. The caller
// makes sure no argument holds a secret.
func invalid(format string, args ...any) error {
	return fmt.Errorf("connect: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}
