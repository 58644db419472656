package kafka

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger bridges franz-go's kgo.Logger to a *slog.Logger (WithLogger).
// franz-go's plugin/kslog does the same but is a module of its own; this
// is the few lines ferry needs.
type kgoLogger struct{ l *slog.Logger }

func newKgoLogger(l *slog.Logger) kgoLogger {
	return kgoLogger{l.With(slog.String("client", "franz-go"))}
}

// Level is the most verbose franz-go level the slog logger has enabled, so
// that franz-go does not build records the handler would drop. It is asked
// before each record, so a handler whose level changes is followed.
func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case k.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case k.l.Enabled(ctx, slog.LevelInfo):
		return kgo.LogLevelInfo
	case k.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case k.l.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

// Log logs msg at the slog level matching level; keyvals are franz-go's
// alternating keys and values, which slog takes as they are.
func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelInfo
	case kgo.LogLevelDebug:
		l = slog.LevelDebug
	default:
		return
	}
	k.l.Log(context.Background(), l, msg, keyvals...)
}
