package com.github.ferrymsg.ferry.interop.spring;

import java.math.BigDecimal;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.ObjectMapper;

import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.MessageDeliveryMode;
import org.springframework.amqp.core.MessagePostProcessor;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitTemplate;
import org.springframework.amqp.support.converter.Jackson2JsonMessageConverter;
import org.springframework.amqp.support.converter.JacksonJsonMessageConverter;
import org.springframework.amqp.support.converter.MessageConverter;

/**
 * Spring AMQP's side of ferry's interop tests (interop/spring_test.go).
 *
 * <pre>
 * receive URI QUEUE COUNT CONVERTER
 *     take COUNT messages from QUEUE (10 s each at most), convert each with
 *     CONVERTER, print a RECEIVED line for each
 * send URI EXCHANGE ROUTING_KEY CONVERTER
 *     RabbitTemplate.convertAndSend three messages (an Order with
 *     properties set by a MessagePostProcessor, a Map sent transient, a
 *     String) to EXCHANGE, print a SENT line for each
 * </pre>
 *
 * CONVERTER is jackson2 (Jackson2JsonMessageConverter) or jackson3
 * (JacksonJsonMessageConverter). Output lines are "RECEIVED {json}" and
 * "SENT {json}"; the test ignores anything else. Exit status 0 on
 * success, 1 on a failure (the cause on stderr), 2 on bad arguments.
 */
public final class SpringAmqp {
	/** The package whose classes the converters may create from __TypeId__. */
	static final String TRUSTED = Order.class.getPackageName();

	/** Plain Jackson 2 for printing what happened: not the code under test. */
	static final ObjectMapper PRINT = new ObjectMapper();

	public static void main(String[] args) throws Exception {
		if (args.length != 5) {
			usage();
		}
		CachingConnectionFactory cf = connectionFactory(args[1]);
		try {
			RabbitTemplate template = new RabbitTemplate(cf);
			template.setMessageConverter(converter(args[4]));
			switch (args[0]) {
			case "receive" -> receive(template, args[2], Integer.parseInt(args[3]));
			case "send" -> send(template, args[2], args[3]);
			default -> usage();
			}
		} finally {
			cf.destroy();
		}
	}

	static void usage() {
		System.err.println("usage: receive URI QUEUE COUNT jackson2|jackson3 | send URI EXCHANGE ROUTING_KEY jackson2|jackson3");
		System.exit(2);
	}

	static CachingConnectionFactory connectionFactory(String uri) throws Exception {
		com.rabbitmq.client.ConnectionFactory rabbit = new com.rabbitmq.client.ConnectionFactory();
		rabbit.setUri(uri);
		// The Java client reads "amqp://host/" as the vhost "", Go's
		// amqp091 (and RabbitMQ's URI spec users) as "/".
		String path = new URI(uri).getPath();
		if (path == null || path.isEmpty() || path.equals("/")) {
			rabbit.setVirtualHost("/");
		}
		return new CachingConnectionFactory(rabbit);
	}

	static MessageConverter converter(String name) {
		return switch (name) {
		case "jackson2" -> new Jackson2JsonMessageConverter(TRUSTED);
		case "jackson3" -> new JacksonJsonMessageConverter(TRUSTED);
		default -> {
			usage();
			yield null;
		}
		};
	}

	/**
	 * What RabbitTemplate.receiveAndConvert does, in its two steps
	 * (receive, then the template's converter's fromMessage), so that the
	 * message's properties can be printed beside the converted object.
	 */
	static void receive(RabbitTemplate template, String queue, int count) throws Exception {
		for (int i = 0; i < count; i++) {
			Message m = template.receive(queue, 10_000);
			if (m == null) {
				System.err.printf("receive: message %d of %d: nothing in queue %s after 10 s%n", i + 1, count, queue);
				System.exit(1);
			}
			Object o = template.getMessageConverter().fromMessage(m);
			Map<String, Object> out = new LinkedHashMap<>();
			out.put("class", o.getClass().getName());
			out.put("value", describe(o));
			out.put("properties", properties(m.getMessageProperties()));
			System.out.println("RECEIVED " + PRINT.writeValueAsString(out));
		}
	}

	/** The converted object's fields, read through its own accessors. */
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
		if (o instanceof byte[] b) {
			return "bytes:" + new String(b, StandardCharsets.UTF_8);
		}
		if (o instanceof Map<?, ?> map) {
			Map<String, Object> f = new TreeMap<>();
			map.forEach((k, v) -> f.put(String.valueOf(k), v + " (" + v.getClass().getSimpleName() + ")"));
			return f;
		}
		return String.valueOf(o);
	}

	static Map<String, Object> properties(MessageProperties p) {
		Map<String, Object> out = new LinkedHashMap<>();
		out.put("contentType", p.getContentType());
		out.put("contentEncoding", p.getContentEncoding());
		out.put("messageId", p.getMessageId());
		out.put("correlationId", p.getCorrelationId());
		out.put("replyTo", p.getReplyTo());
		out.put("type", p.getType());
		out.put("appId", p.getAppId());
		out.put("priority", p.getPriority());
		out.put("expiration", p.getExpiration());
		out.put("deliveryMode", String.valueOf(p.getReceivedDeliveryMode() != null ? p.getReceivedDeliveryMode() : p.getDeliveryMode()));
		out.put("timestamp", p.getTimestamp() == null ? null : p.getTimestamp().toInstant().toString());
		Map<String, String> headers = new TreeMap<>();
		p.getHeaders().forEach((k, v) -> headers.put(k, v + " (" + (v == null ? "null" : v.getClass().getSimpleName()) + ")"));
		out.put("headers", headers);
		return out;
	}

	static void send(RabbitTemplate template, String exchange, String routingKey) throws Exception {
		Order order = new Order("spring-order-1", "Zoë", 3, new BigDecimal("12.50"), true, List.of("apple", "pear"));
		template.convertAndSend(exchange, routingKey, order, printed(m -> {
			MessageProperties p = m.getMessageProperties();
			p.setMessageId("spring-1");
			p.setCorrelationId("corr-42");
			p.setReplyTo("spring.replies");
			p.setAppId("ferry-interop-spring");
			p.setType("order.created");
			p.setPriority(5);
			p.setExpiration("600000");
			p.setHeader("x-int", 7);
			p.setHeader("x-long", 1L << 40);
			p.setHeader("x-bool", true);
			p.setHeader("x-list", List.of("a", 1));
			return m;
		}));
		Map<String, Object> map = new LinkedHashMap<>();
		map.put("sku", "A-1");
		map.put("qty", 2);
		template.convertAndSend(exchange, routingKey, map, printed(m -> {
			m.getMessageProperties().setDeliveryMode(MessageDeliveryMode.NON_PERSISTENT);
			return m;
		}));
		template.convertAndSend(exchange, routingKey, "hello from Spring", printed(m -> m));
	}

	/** Prints the message that convertAndSend is about to send, after pp. */
	static MessagePostProcessor printed(MessagePostProcessor pp) {
		return m -> {
			Message out = pp.postProcessMessage(m);
			Map<String, Object> line = new LinkedHashMap<>();
			line.put("body", new String(out.getBody(), StandardCharsets.UTF_8));
			line.put("properties", properties(out.getMessageProperties()));
			try {
				System.out.println("SENT " + PRINT.writeValueAsString(line));
			} catch (Exception e) {
				throw new IllegalStateException(e);
			}
			return out;
		};
	}
}
