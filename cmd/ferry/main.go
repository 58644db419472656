package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes (documented in doc.go and the root command's help).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "ferry: "+oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(stderr, "Run 'ferry --help' for usage.")
		return exitUsage
	}
	return exitError
}

// isCobraUsage reports the errors cobra itself returns for a bad command
// line (it has no error type for them).
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "flag needs an argument", "invalid argument", "required flag"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// oneLine keeps an error on one line: some client errors hold newlines.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}

const rootLong = `ferry watches topics and repairs dead letters on Kafka and RabbitMQ.

Every command takes the broker as a URL, the same URLs as the
github.com/ferrymsg/ferry/connect package:

  kafka://host:9092[,host:9092...][?tls=true&sasl=scram-sha-512]
  amqp://user:password@host:5672/vhost     (amqps:// for TLS)

Passwords are never printed: URLs are shown with the password as xxxxx.

Exit codes:
  0  success (for tail: stopped by Ctrl-C or --max reached)
  1  error: bad URL, broker down, unknown topic or group, failed or
     interrupted replay (the error says what was done; rerun to continue)
  2  usage: unknown command or flag, wrong number of arguments`

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Watch topics and repair dead letters on Kafka and RabbitMQ",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  ferry tail kafka://127.0.0.1:9092 orders --from -10
  ferry dlt ls kafka://127.0.0.1:9092 orders.DLT
  ferry dlt replay amqp://guest:guest@127.0.0.1:5672/ orders.DLT --group ops --filter error=timeout`,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	io := &ioStreams{in: stdin, out: stdout, err: stderr}
	root.AddCommand(newTail(io), newPublish(io), newDLT(io), newLag(io), newTopics(io))
	return root
}

// ioStreams are the command's standard streams.
type ioStreams struct {
	in       io.Reader
	out, err io.Writer
}

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %d arguments, <%s>; got %d", cmd.CommandPath(), len(names), strings.Join(names, "> <"), len(args))
		}
		return nil
	}
}

// rangeArgs takes the names of the required arguments and then the
// optional ones.
func rangeArgs(required []string, optional ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(required) || len(args) > len(required)+len(optional) {
			all := "<" + strings.Join(required, "> <") + ">"
			for _, o := range optional {
				all += " [<" + o + ">]"
			}
			return usagef("%s takes %s; got %d arguments", cmd.CommandPath(), all, len(args))
		}
		return nil
	}
}
