package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymsg/ferry/message"
)

// publishBatch is how many lines one Publish call carries.
const publishBatch = 500

func newPublish(ios *ioStreams) *cobra.Command {
	var (
		key, file string
		headers   []string
		raw, js   bool
	)
	cmd := &cobra.Command{
		Use:   "publish <url> <topic>",
		Short: "Publish messages from a file or stdin and print their IDs",
		Long: `publish reads messages from --file or stdin, one message per line (the
line without its newline is the payload), or the whole input as one message
with --raw, publishes them to the topic, and prints each message's ID once
the broker acknowledged it. Every message gets --key and the --header
values.`,
		Example: `  echo '{"order":"o-1"}' | ferry publish kafka://127.0.0.1:9092 orders --key alice
  ferry publish amqp://guest:guest@127.0.0.1:5672/ orders --file orders.jsonl --header source=backfill
  ferry publish kafka://127.0.0.1:9092 images --raw --file cat.png`,
		Args: exactArgs("url", "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			hdr := map[string]string{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return usagef("--header %q: want name=value", h)
				}
				hdr[k] = v
			}
			in := ios.in
			if file != "" && file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			b, err := open(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			out := output{w: ios.out, json: js}
			topic := args[1]
			newMsg := func(p []byte) *message.Message {
				m := &message.Message{ID: message.NewID(), Key: key, Payload: p, Time: time.Now()}
				if len(hdr) > 0 {
					m.Headers = make(map[string]string, len(hdr))
					for k, v := range hdr {
						m.Headers[k] = v
					}
				}
				return m
			}
			send := func(ms []*message.Message) error {
				if err := b.Publisher().Publish(cmd.Context(), topic, ms...); err != nil {
					return fmt.Errorf("publish to %s: %w", topic, err)
				}
				for _, m := range ms {
					if js {
						if err := out.line(map[string]string{"topic": topic, "id": m.ID}); err != nil {
							return err
						}
					} else if _, err := fmt.Fprintln(ios.out, m.ID); err != nil {
						return err
					}
				}
				return nil
			}
			if raw {
				p, err := io.ReadAll(in)
				if err != nil {
					return err
				}
				return send([]*message.Message{newMsg(p)})
			}
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, 64<<10), 64<<20)
			var batch []*message.Message
			for sc.Scan() {
				batch = append(batch, newMsg(append([]byte(nil), sc.Bytes()...)))
				if len(batch) == publishBatch {
					if err := send(batch); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
			if err := sc.Err(); err != nil {
				return fmt.Errorf("read the input: %w", err)
			}
			if len(batch) > 0 {
				return send(batch)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the messages' key")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "a header name=value (repeat for more)")
	cmd.Flags().StringVarP(&file, "file", "f", "", "read from this file instead of stdin")
	cmd.Flags().BoolVar(&raw, "raw", false, "the whole input is one message")
	cmd.Flags().BoolVar(&js, "json", false, `print {"topic":...,"id":...} lines`)
	return cmd
}
