"""Python pika's side of ferry's interop tests (interop/pika_test.go).

    python publish.py URL EXCHANGE ROUTING_KEY

publishes the messages of CASES to EXCHANGE with publisher confirms and
mandatory routing, and prints "SENT {json}" for each (the case name, the
properties and the headers as Python sees them). Exit status 0 when the
broker confirmed every message, 1 otherwise.
"""

import datetime
import decimal
import json
import sys

import pika

WHEN = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

# Each case: (name, properties, body). The "case" header names the case
# for the test on the ferry side.
CASES = [
    (
        "all-types",
        dict(
            message_id="pika-1",
            content_type="text/plain",
            content_encoding="utf-8",
            correlation_id="corr-py",
            reply_to="py.replies",
            type="sensor.reading",
            app_id="pika-interop",
            user_id=None,  # set to the connection's user, which RabbitMQ checks it against
            priority=3,
            expiration="60000",
            delivery_mode=pika.DeliveryMode.Persistent,
            timestamp=1700000000,
            headers={
                "int": 42,
                "negative": -7,
                "big": 1 << 40,
                "bool-true": True,
                "bool-false": False,
                "decimal": decimal.Decimal("12.50"),
                "str": "héllo",
                "bytes": b"\x00\xffraw",
                "timestamp": WHEN,
                "table": {"a": 1, "b": "two", "nested": {"c": True}},
                "array": [1, "x", False, None, [b"y"]],
                "void": None,
                "x-death": [{"count": 3, "reason": "rejected", "queue": "q", "time": WHEN, "routing-keys": ["rk"]}],
            },
        ),
        "reading 1".encode(),
    ),
    # No property at all, a binary body: no message_id, no timestamp.
    ("bare", dict(headers={}), b"\x00\x01\xfe\xff"),
    # A transient message that sets ferry's own headers itself: its Key
    # and Time come from them.
    (
        "ferry-headers",
        dict(
            delivery_mode=pika.DeliveryMode.Transient,
            headers={"ferry-key": "sensor-9", "ferry-time": 1700000000123},
        ),
        b"{}",
    ),
    # Table entries named like ferry's property headers are dropped; the
    # property wins.
    (
        "reserved-names",
        dict(
            content_type="application/json",
            headers={"amqp-content-type": "spoofed", "amqp-app-id": "spoofed", "amqp-other": "kept", "content-type": "kept too"},
        ),
        b'{"ok":true}',
    ),
]


def main():
    url, exchange, routing_key = sys.argv[1:4]
    params = pika.URLParameters(url)
    CASES[0][1]["user_id"] = params.credentials.username
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for name, props, body in CASES:
            headers = dict(props.pop("headers"))
            headers["case"] = name
            p = pika.BasicProperties(headers=headers, **props)
            # With confirms on, basic_publish raises on a nack or a return.
            ch.basic_publish(exchange, routing_key, body, properties=p, mandatory=True)
            shown = {k: v for k, v in vars(p).items() if v is not None}
            print("SENT " + json.dumps({"case": name, "properties": shown, "body": repr(body)}, default=repr), flush=True)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
