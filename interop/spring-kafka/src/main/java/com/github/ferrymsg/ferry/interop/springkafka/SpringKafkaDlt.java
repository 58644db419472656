package com.github.ferrymsg.ferry.interop.springkafka;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Level;
import java.util.logging.Logger;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaOperations;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.DeadLetterPublishingRecoverer;
import org.springframework.kafka.listener.DefaultErrorHandler;
import org.springframework.kafka.listener.KafkaMessageListenerContainer;
import org.springframework.kafka.listener.MessageListener;
import org.springframework.kafka.support.KafkaHeaders;
import org.springframework.messaging.handler.annotation.Header;
import org.springframework.messaging.handler.annotation.Payload;
import org.springframework.util.backoff.FixedBackOff;

/**
 * Spring Kafka's side of interop/spring_kafka_dlt_test.go.
 *
 * <pre>
 * recover BOOTSTRAP GROUP TOPICS
 *     A KafkaMessageListenerContainer consumes TOPICS (comma-separated) as GROUP
 *     with a listener that throws IllegalStateException("no such order"); a
 *     DefaultErrorHandler with no retries hands each record to Spring's
 *     DeadLetterPublishingRecoverer (default destination resolver: TOPIC-dlt, same
 *     partition), which publishes it. Prints "RECOVERED topic partition offset"
 *     once each DLT publish is acknowledged; ends after one record per topic.
 * listen BOOTSTRAP GROUP DLTS COUNT
 *     A @KafkaListener on DLTS (comma-separated) whose parameters bind every dead-letter header
 *     with @Header (required, as by default): for each record prints
 *     "READ {json}" with the values Spring bound, or "FAILED {json}" when
 *     Spring could not call the listener (a missing or unconvertible header).
 *     Ends after COUNT records.
 * </pre>
 */
public final class SpringKafkaDlt {

	private SpringKafkaDlt() {
	}

	public static void main(String[] args) throws Exception {
		Logger.getLogger("").setLevel(Level.WARNING);
		if (args.length == 4 && args[0].equals("recover")) {
			recover(args[1], args[2], args[3].split(","));
		}
		else if (args.length == 5 && args[0].equals("listen")) {
			listen(args[1], args[2], args[3], Integer.parseInt(args[4]));
		}
		else {
			System.err.println("usage: recover BOOTSTRAP GROUP TOPICS | listen BOOTSTRAP GROUP DLTS COUNT");
			System.exit(2);
		}
		System.exit(0);
	}

	static Map<String, Object> consumerProps(String bootstrap, String group) {
		Map<String, Object> p = new HashMap<>();
		p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
		p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
		p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
		p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
		p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
		return p;
	}

	static void recover(String bootstrap, String group, String... topics) throws Exception {
		Map<String, Object> pp = new HashMap<>();
		pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
		pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
		pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
		KafkaTemplate<byte[], byte[]> template = new KafkaTemplate<>(new DefaultKafkaProducerFactory<>(pp));
		CountDownLatch done = new CountDownLatch(topics.length);
		DeadLetterPublishingRecoverer recoverer = new DeadLetterPublishingRecoverer(template) {
			@Override
			protected void publish(ProducerRecord<Object, Object> out, KafkaOperations<Object, Object> ops,
					ConsumerRecord<?, ?> in) {
				super.publish(out, ops, in); // waits for the broker's ack (failIfSendResultIsError)
				System.out.println("RECOVERED " + in.topic() + " " + in.partition() + " " + in.offset());
				done.countDown();
			}
		};
		ContainerProperties props = new ContainerProperties(topics);
		props.setMessageListener((MessageListener<byte[], byte[]>) rec -> {
			throw new IllegalStateException("no such order");
		});
		KafkaMessageListenerContainer<byte[], byte[]> container =
				new KafkaMessageListenerContainer<>(new DefaultKafkaConsumerFactory<>(consumerProps(bootstrap, group)), props);
		container.setCommonErrorHandler(new DefaultErrorHandler(recoverer, new FixedBackOff(0L, 0L)));
		container.start();
		boolean ok = done.await(50, TimeUnit.SECONDS);
		container.stop();
		template.destroy();
		if (!ok) {
			System.err.println("not every topic's record recovered within 50 s");
			System.exit(1);
		}
	}

	static final AtomicInteger seen = new AtomicInteger();

	static CountDownLatch allSeen;

	static void listen(String bootstrap, String group, String dlts, int count) throws Exception {
		allSeen = new CountDownLatch(count);
		System.setProperty("ferry.bootstrap", bootstrap);
		System.setProperty("ferry.dlt", dlts);
		System.setProperty("ferry.group", group);
		try (AnnotationConfigApplicationContext ctx = new AnnotationConfigApplicationContext(ListenConfig.class)) {
			if (!allSeen.await(50, TimeUnit.SECONDS)) {
				System.err.println("saw " + seen.get() + " of " + count + " records within 50 s");
				System.exit(1);
			}
		}
	}

	/** The application: Spring Kafka's listener infrastructure, as a Boot application gets it. */
	@Configuration
	@EnableKafka
	public static class ListenConfig {

		@Bean
		public ConcurrentKafkaListenerContainerFactory<byte[], byte[]> kafkaListenerContainerFactory() {
			ConcurrentKafkaListenerContainerFactory<byte[], byte[]> f = new ConcurrentKafkaListenerContainerFactory<>();
			f.setConsumerFactory(new DefaultKafkaConsumerFactory<>(
					consumerProps(System.getProperty("ferry.bootstrap"), System.getProperty("ferry.group"))));
			// A record the listener cannot be called for (a required header
			// missing) is reported, not retried.
			f.setCommonErrorHandler(new DefaultErrorHandler((rec, ex) -> {
				Throwable root = ex;
				while (root.getCause() != null) {
					root = root.getCause();
				}
				System.out.println("FAILED {\"offset\":" + rec.offset() + ",\"error\":" + json(root.toString()) + "}");
				seen.incrementAndGet();
				allSeen.countDown();
			}, new FixedBackOff(0L, 0L)));
			return f;
		}

		@Bean
		public DltListener dltListener() {
			return new DltListener();
		}
	}

	/** A dead-letter listener written as Spring Kafka's documentation shows. */
	public static class DltListener {

		@KafkaListener(topics = "#{'${ferry.dlt}'.split(',')}", groupId = "${ferry.group}")
		public void onDeadLetter(@Payload byte[] value,
				@Header(KafkaHeaders.RECEIVED_KEY) byte[] key,
				@Header(KafkaHeaders.RECEIVED_PARTITION) int receivedPartition,
				@Header(KafkaHeaders.OFFSET) long receivedOffset,
				@Header(KafkaHeaders.DLT_ORIGINAL_TOPIC) String originalTopic,
				@Header(KafkaHeaders.DLT_ORIGINAL_PARTITION) byte[] originalPartition,
				@Header(KafkaHeaders.DLT_ORIGINAL_OFFSET) byte[] originalOffset,
				@Header(KafkaHeaders.DLT_ORIGINAL_TIMESTAMP) byte[] originalTimestamp,
				@Header(KafkaHeaders.DLT_ORIGINAL_TIMESTAMP_TYPE) String originalTimestampType,
				@Header(KafkaHeaders.DLT_ORIGINAL_CONSUMER_GROUP) String originalGroup,
				@Header(KafkaHeaders.DLT_EXCEPTION_FQCN) String exceptionFqcn,
				@Header(KafkaHeaders.DLT_EXCEPTION_CAUSE_FQCN) String exceptionCauseFqcn,
				@Header(KafkaHeaders.DLT_EXCEPTION_MESSAGE) String exceptionMessage,
				@Header(KafkaHeaders.DLT_EXCEPTION_STACKTRACE) String exceptionStacktrace) {

			StringBuilder b = new StringBuilder("READ {");
			b.append("\"receivedPartition\":").append(receivedPartition);
			b.append(",\"receivedOffset\":").append(receivedOffset);
			b.append(",\"key\":").append(json(new String(key, StandardCharsets.UTF_8)));
			b.append(",\"value\":").append(json(new String(value, StandardCharsets.UTF_8)));
			b.append(",\"originalTopic\":").append(json(originalTopic));
			b.append(",\"originalPartition\":").append(ByteBuffer.wrap(exact(originalPartition, 4)).getInt());
			b.append(",\"originalOffset\":").append(ByteBuffer.wrap(exact(originalOffset, 8)).getLong());
			b.append(",\"originalTimestamp\":").append(ByteBuffer.wrap(exact(originalTimestamp, 8)).getLong());
			b.append(",\"originalTimestampType\":").append(json(originalTimestampType));
			b.append(",\"originalGroup\":").append(json(originalGroup));
			b.append(",\"exceptionFqcn\":").append(json(exceptionFqcn));
			b.append(",\"exceptionCauseFqcn\":").append(json(exceptionCauseFqcn));
			b.append(",\"exceptionMessage\":").append(json(exceptionMessage));
			b.append(",\"exceptionStacktrace\":").append(json(exceptionStacktrace));
			b.append('}');
			System.out.println(b);
			seen.incrementAndGet();
			allSeen.countDown();
		}

		private static byte[] exact(byte[] v, int n) {
			if (v.length != n) {
				throw new IllegalArgumentException("want " + n + " bytes, got " + v.length);
			}
			return v;
		}
	}

	static String json(String s) {
		StringBuilder b = new StringBuilder("\"");
		for (int i = 0; i < s.length(); i++) {
			char c = s.charAt(i);
			switch (c) {
				case '"' -> b.append("\\\"");
				case '\\' -> b.append("\\\\");
				case '\n' -> b.append("\\n");
				case '\r' -> b.append("\\r");
				case '\t' -> b.append("\\t");
				default -> {
					if (c < 0x20) {
						b.append(String.format("\\u%04x", (int) c));
					}
					else {
						b.append(c);
					}
				}
			}
		}
		return b.append('"').toString();
	}
}
