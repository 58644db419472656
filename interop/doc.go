// Package interop holds tests of ferry's adapters against other clients,
// on the real brokers: what those clients send reaches a ferry handler
// with its properties and headers converted as the adapters' package docs
// say, and what ferry sends is read by them.
//
//	TestSpringAMQPReadsFerry      amqp -> Spring AMQP 4 (RabbitTemplate, Jackson2JsonMessageConverter
//	                              and JacksonJsonMessageConverter): content type, __TypeId__, properties
//	TestFerryReadsSpringAMQP      Spring's RabbitTemplate.convertAndSend -> an amqp Subscriber, and a
//	                              handler that forwards the message unchanged back to Spring
//	TestSpringAMQPReadsFerryCodec a typed codec.Publisher (JSON, WithTypeID) -> Spring AMQP's two JSON
//	                              converters build the Java Order (content_type, __TypeId__)
//	TestFerryCodecReadsSpringAMQP convertAndSend's Order, Map and String -> a typed codec.Handler: the
//	                              Order decodes, the String is a *codec.DecodeError
//	TestSpringKafkaReadsFerryCodec a typed codec.Publisher on Kafka -> a Spring consumer with
//	                              ErrorHandlingDeserializer over JsonDeserializer (Jackson 2) and
//	                              JacksonJsonDeserializer (Jackson 3) builds the Order from __TypeId__
//	TestFerryCodecReadsSpringKafka KafkaTemplate with JsonSerializer / JacksonJsonSerializer -> a typed
//	                              codec.Handler on a kafka Subscriber
//	TestSpringKafkaDeadLetterRecords Spring Kafka 4.1's DeadLetterPublishingRecoverer and the retry
//	                              middleware's Spring profile dead-letter the same failing record
//	                              (CreateTime and LogAppendTime topics): same kafka_dlt-* headers,
//	                              original-* byte for byte, same DLT partition; a Spring @KafkaListener
//	                              binding every DLT header with a required @Header reads ferry's records
//	TestFerryReadsPika            Python's pika -> an amqp Subscriber: every AMQP header type,
//	                              every property, no message_id, reserved names
//	TestFerryReadsKcat            kcat (librdkafka) -> a kafka Subscriber: duplicate header names,
//	                              two ferry-id headers, binary and empty values, no ferry-id
//
// The other clients are prepared by scripts/interop.sh (`make test` runs
// `bash scripts/interop.sh up`): Spring AMQP's side is the Maven project
// in spring-amqp/ (which also holds the Spring Kafka JSON side,
// SpringKafkaJson), Spring Kafka's dead-letter side the one in
// spring-kafka/, pika's the script in pika/. Each test asks the script
// for its client (`path`), skips when the client is missing, as it does
// when the broker is unreachable, and fails instead with
// FERRY_REQUIRE_BROKERS=1.
package interop
