package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/retry"
)

// queueInfo is one queue of a group.
type queueInfo struct {
	name      string
	messages  int
	consumers int
}

// groupQueues finds the queues of group on topic as the amqp adapter lays
// them out: the shards <topic>.<group>.0 ... .N-1, or the single queue
// <topic>.<group> of competing consumers. None is an error.
func groupQueues(conn *amqp091.Connection, topic, group string) ([]queueInfo, error) {
	base := topic + "." + group
	passive := func(name string) (queueInfo, bool, error) {
		ch, err := conn.Channel()
		if err != nil {
			return queueInfo{}, false, err
		}
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		if err != nil {
			var ae *amqp091.Error
			if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
				return queueInfo{}, false, nil
			}
			return queueInfo{}, false, fmt.Errorf("look up queue %q: %w", name, err)
		}
		return queueInfo{name: q.Name, messages: q.Messages, consumers: q.Consumers}, true, nil
	}
	var qs []queueInfo
	for i := 0; i < amqp.ShardBuckets; i++ {
		q, ok, err := passive(base + "." + strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		qs = append(qs, q)
	}
	if len(qs) == 0 {
		q, ok, err := passive(base)
		if err != nil {
			return nil, err
		}
		if ok {
			qs = append(qs, q)
		}
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("group %q has no queues on %q (looked for %s.0... and %s): pass --group, the group whose queues keep these messages", group, topic, base, base)
	}
	return qs, nil
}

// amqpDLT is a DLT on RabbitMQ: the queues of one group.
type amqpDLT struct {
	b      *broker
	conn   *amqp091.Connection
	topic  string
	group  string
	queues []queueInfo
}

func openAMQPDLT(_ context.Context, b *broker, topic, group string) (*amqpDLT, error) {
	conn, err := dialAMQP(b)
	if err != nil {
		return nil, err
	}
	if err := checkExchange(conn, topic); err != nil {
		conn.Close()
		return nil, err
	}
	qs, err := groupQueues(conn, topic, group)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &amqpDLT{b: b, conn: conn, topic: topic, group: group, queues: qs}, nil
}

func (d *amqpDLT) total() int64 {
	var n int64
	for _, q := range d.queues {
		n += int64(q.messages)
	}
	return n
}

// scan takes the ready messages of each queue with basic.get, without
// acknowledging them; closing the queue's channel at the end gives back
// every one that settle did not acknowledge.
func (d *amqpDLT) scan(ctx context.Context, visit func(*dltEntry) error, flush func() error) error {
	for _, q := range d.queues {
		stop, err := d.scanQueue(ctx, q.name, visit, flush)
		if err != nil || stop {
			return err
		}
	}
	return nil
}

func (d *amqpDLT) scanQueue(ctx context.Context, queue string, visit func(*dltEntry) error, flush func() error) (stop bool, err error) {
	ch, err := d.conn.Channel()
	if err != nil {
		return false, err
	}
	defer func() {
		if ferr := flush(); err == nil && ferr != nil {
			err = ferr
		}
		// Give back every delivery not acknowledged (tag 0 with multiple:
		// all outstanding), in their order, then close: Close waits for
		// the broker's close-ok, so the acks and the requeue before it
		// are applied by then.
		if nerr := ch.Nack(0, true, true); err == nil && nerr != nil && !errors.Is(nerr, amqp091.ErrClosed) {
			err = nerr
		}
		if cerr := ch.Close(); err == nil && cerr != nil && !errors.Is(cerr, amqp091.ErrClosed) {
			err = cerr
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		dv, ok, err := ch.Get(queue, false)
		if err != nil {
			return true, fmt.Errorf("get from %q: %w", queue, err)
		}
		if !ok {
			return false, nil
		}
		m := amqp.MessageFromDelivery(d.topic, d.group, &dv)
		info, perr := retry.ParseDeadLetter(m)
		tag := dv.DeliveryTag
		e := &dltEntry{msg: m, info: info, parseErr: perr, where: "queue " + queue,
			ack: func() error { return ch.Ack(tag, false) }}
		if err := visit(e); err != nil {
			if errors.Is(err, errStop) {
				return true, nil
			}
			return true, err
		}
	}
}

func (d *amqpDLT) settle(_ context.Context, es []*dltEntry, _ string) error {
	for _, e := range es {
		if err := e.ack(); err != nil {
			return fmt.Errorf("acknowledge %s on %s: %w", e.msg.ID, e.where, err)
		}
	}
	return nil
}

func (d *amqpDLT) close() error { return d.conn.Close() }
