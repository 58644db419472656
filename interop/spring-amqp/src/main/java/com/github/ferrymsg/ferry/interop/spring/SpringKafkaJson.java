package com.github.ferrymsg.ferry.interop.spring;

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.core.log.LogAccessor;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.support.serializer.DeserializationException;
import org.springframework.kafka.support.serializer.ErrorHandlingDeserializer;
import org.springframework.kafka.support.serializer.JacksonJsonDeserializer;
import org.springframework.kafka.support.serializer.JacksonJsonSerializer;
import org.springframework.kafka.support.serializer.JsonDeserializer;
import org.springframework.kafka.support.serializer.JsonSerializer;
import org.springframework.kafka.support.serializer.SerializationUtils;

/**
 * Spring Kafka's side of ferry's codec interop tests
 * (interop/codec_spring_test.go): its JSON serializers, configured by
 * properties as a Spring Boot application's spring.kafka.* settings would.
 *
 * <pre>
 * receive BOOTSTRAP TOPIC GROUP COUNT SERDE
 *     a consumer of GROUP (from the earliest offset) whose value
 *     deserializer is ErrorHandlingDeserializer delegating to SERDE's
 *     deserializer, trusting Order's package and with no default type (the
 *     type comes from __TypeId__); prints a RECEIVED line for each of COUNT
 *     records, with the deserialization error when there was one
 * send BOOTSTRAP TOPIC SERDE
 *     KafkaTemplate with SERDE's serializer sends two Orders (keys
 *     spring-order-1 and spring-order-2); prints a SENT line for each
 * </pre>
 *
 * SERDE is jackson2 (JsonSerializer, JsonDeserializer) or jackson3
 * (JacksonJsonSerializer, JacksonJsonDeserializer). Exit status 0 on
 * success, 1 on a failure, 2 on bad arguments.
 */
public final class SpringKafkaJson {
	static final ObjectMapper PRINT = new ObjectMapper();
	static final LogAccessor LOG = new LogAccessor(SpringKafkaJson.class);

	public static void main(String[] args) throws Exception {
		if (args.length < 1) {
			usage();
		}
		switch (args[0]) {
		case "receive" -> {
			if (args.length != 6) {
				usage();
			}
			receive(args[1], args[2], args[3], Integer.parseInt(args[4]), args[5]);
		}
		case "send" -> {
			if (args.length != 4) {
				usage();
			}
			send(args[1], args[2], args[3]);
		}
		default -> usage();
		}
	}

	static void usage() {
		System.err.println("usage: receive BOOTSTRAP TOPIC GROUP COUNT jackson2|jackson3 | send BOOTSTRAP TOPIC jackson2|jackson3");
		System.exit(2);
	}

	static Class<?> deserializer(String serde) {
		return switch (serde) {
		case "jackson2" -> JsonDeserializer.class;
		case "jackson3" -> JacksonJsonDeserializer.class;
		default -> {
			usage();
			yield null;
		}
		};
	}

	static Class<?> serializer(String serde) {
		return switch (serde) {
		case "jackson2" -> JsonSerializer.class;
		case "jackson3" -> JacksonJsonSerializer.class;
		default -> {
			usage();
			yield null;
		}
		};
	}

	static void receive(String bootstrap, String topic, String group, int count, String serde) throws Exception {
		Map<String, Object> props = new LinkedHashMap<>();
		props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
		props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
		props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
		props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
		props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ErrorHandlingDeserializer.class);
		props.put(ErrorHandlingDeserializer.VALUE_DESERIALIZER_CLASS, deserializer(serde));
		// The same property name for both generations.
		props.put(JsonDeserializer.TRUSTED_PACKAGES, Order.class.getPackageName());
		DefaultKafkaConsumerFactory<String, Object> cf = new DefaultKafkaConsumerFactory<>(props);
		try (Consumer<String, Object> consumer = cf.createConsumer()) {
			consumer.subscribe(List.of(topic));
			long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
			int got = 0;
			while (got < count) {
				if (System.nanoTime() > deadline) {
					System.err.printf("receive: %d of %d records after 30 s%n", got, count);
					System.exit(1);
				}
				for (ConsumerRecord<String, Object> r : consumer.poll(Duration.ofMillis(500))) {
					got++;
					Map<String, Object> out = new LinkedHashMap<>();
					Object v = r.value();
					out.put("key", r.key());
					out.put("class", v == null ? null : v.getClass().getName());
					out.put("value", describe(v));
					out.put("headers", headers(r));
					DeserializationException e = SerializationUtils.getExceptionFromHeader(r,
							SerializationUtils.VALUE_DESERIALIZER_EXCEPTION_HEADER, LOG);
					if (e != null) {
						out.put("error", e.getMessage() + (e.getCause() != null ? ": " + e.getCause().getMessage() : ""));
					}
					System.out.println("RECEIVED " + PRINT.writeValueAsString(out));
				}
			}
			consumer.commitSync();
		}
	}

	static Object describe(Object o) {
		if (o instanceof Order order) {
			Map<String, Object> f = new LinkedHashMap<>();
			f.put("id", order.id());
			f.put("customer", order.customer());
			f.put("quantity", order.quantity());
			f.put("total", order.total().toPlainString());
			f.put("express", order.express());
			f.put("items", order.items());
			return f;
		}
		return o == null ? null : String.valueOf(o);
	}

	static Map<String, String> headers(ConsumerRecord<?, ?> r) {
		Map<String, String> out = new TreeMap<>();
		for (Header h : r.headers()) {
			if (!h.key().startsWith(SerializationUtils.DESERIALIZER_EXCEPTION_HEADER_PREFIX)) {
				out.put(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8));
			}
		}
		return out;
	}

	static void send(String bootstrap, String topic, String serde) throws Exception {
		Map<String, Object> props = new LinkedHashMap<>();
		props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
		props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
		props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, serializer(serde));
		DefaultKafkaProducerFactory<String, Object> pf = new DefaultKafkaProducerFactory<>(props);
		try {
			KafkaTemplate<String, Object> template = new KafkaTemplate<>(pf);
			List<Order> orders = List.of(
					new Order("spring-order-1", "Zoë", 3, new BigDecimal("12.50"), true, List.of("apple", "pear")),
					new Order("spring-order-2", "名前", 1, new BigDecimal("0.99"), false, List.of()));
			for (Order o : orders) {
				var result = template.send(new ProducerRecord<>(topic, o.id(), o)).get();
				Map<String, Object> line = new LinkedHashMap<>();
				line.put("key", o.id());
				line.put("partition", result.getRecordMetadata().partition());
				Map<String, String> hs = new TreeMap<>();
				for (Header h : result.getProducerRecord().headers()) {
					hs.put(h.key(), new String(h.value(), StandardCharsets.UTF_8));
				}
				line.put("headers", hs);
				System.out.println("SENT " + PRINT.writeValueAsString(line));
			}
		} finally {
			pf.destroy();
		}
	}
}
