// Package broker turns the examples' -broker URL into a ferry publisher and
// subscribers, so that every example runs unchanged on the in-memory broker
// (the default), on Kafka and on RabbitMQ:
//
//	inmem://                                  (or empty) the in-memory broker
//	kafka://127.0.0.1:9092[,host:port...]     Kafka seed brokers
//	amqp://guest:guest@127.0.0.1:5672/        RabbitMQ (amqps:// too)
//
// The URL is opened by the public package connect (its query parameters
// work here too); this package adds only the examples' plumbing: run-ID
// topic names, demo redelivery settings, and Main. An application uses
// connect.Open directly.
//
// # Names on real brokers
//
// A real broker keeps what earlier runs left behind: topics with old
// messages, groups with committed offsets, queues holding messages. So that
// each run starts clean and its counts come out the same every time, Topic
// suffixes topic names with a run ID on Kafka and RabbitMQ
// ("order-events-r3f9a1c"); on inmem they stay as written. Group names are
// kept as written: a group's position is per topic (Kafka offsets, AMQP
// queue topic.group), so a fresh topic gives every group a fresh start.
// Close deletes the run's Kafka topics; the run's RabbitMQ queues carry
// x-expires and disappear a minute after their last consumer leaves.
package broker
