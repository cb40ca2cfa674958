"""The per-client limits of `tern serve` (client identifier length, topic
levels and length, subscriptions per client, message and byte rates,
connection rate): each answered with its reason code, or throttled, while
the broker stays up and other clients are unaffected.

Tern only: these settings are Tern's (Mosquitto has no equivalent of most).
"""

from __future__ import annotations

import time

import pytest

from harness import raw as wire
from harness.broker import Broker, broker_kind
from harness.clients import V5, V311, Client

pytestmark = pytest.mark.skipif(broker_kind() != "tern", reason="Tern's limit settings")

LIMITS = """\
max_client_id_length = 16
max_topic_levels = 4
max_topic_length = 64
max_subscriptions_per_client = 3
"""


def start(tmp_path, config: str) -> Broker:
    broker = Broker("tern", tmp_path, config=config)
    broker.start_fresh()
    return broker


@pytest.fixture
def limited(tmp_path):
    broker = start(tmp_path, LIMITS)
    try:
        yield broker
    finally:
        broker.cleanup()


def raw(broker, version=V5) -> wire.RawClient:
    return wire.RawClient(broker.host, broker.port, version=version)


def publish_qos1(client: wire.RawClient, topic: str, packet_id: int) -> int:
    client.send(wire.publish(topic, b"x", version=client.version, qos=1, packet_id=packet_id))
    return client.expect(wire.PUBACK).reason


def suback(client: wire.RawClient, packet_id: int, filters: list[str]) -> list[int]:
    client.send(wire.subscribe(packet_id, [(f, 1) for f in filters], version=client.version))
    body = client.expect(wire.SUBACK).body
    start = 2
    if client.version == V5:
        start += 1 + body[2]  # the property length (short, no properties expected)
    return list(body[start:])


@pytest.mark.parametrize("version,refused", [(V311, 2), (V5, 0x85)])
def test_client_id_length(limited, version, refused):
    client = raw(limited, version)
    assert client.connect("x" * 17).reason == refused
    client.close()
    client = raw(limited, version)
    assert client.connect("x" * 16).reason == 0
    client.close()


def test_topic_levels_and_length(limited):
    client = raw(limited)
    assert client.connect("topics").reason == 0
    assert publish_qos1(client, "a/b/c/d", 1) == 0x10
    assert publish_qos1(client, "a/b/c/d/e", 2) == 0x90
    assert publish_qos1(client, "t" * 65, 3) == 0x90
    assert suback(client, 4, ["a/+/c/#", "a/b/c/d/#", "f" * 65]) == [1, 0x8F, 0x8F]
    # The connection is still up and usable.
    assert publish_qos1(client, "a/b", 5) == 0x10
    client.close()


@pytest.mark.parametrize("version,refused", [(V311, 0x80), (V5, 0x97)])
def test_subscriptions_per_client(limited, version, refused):
    client = raw(limited, version)
    assert client.connect("subs").reason == 0
    assert suback(client, 1, ["s/1", "s/2", "s/3", "s/4"]) == [1, 1, 1, refused]
    assert suback(client, 2, ["s/1"]) == [1], "re-subscribing an existing filter is no new one"
    other = raw(limited, version)
    assert other.connect("other-subs").reason == 0
    assert suback(other, 1, ["s/4"]) == [1], "the quota is per client"
    client.close()
    other.close()


def test_message_rate_throttles_without_losing_anything(tmp_path):
    broker = start(tmp_path, "max_message_rate = 20\n")
    clients = []
    try:
        subscriber = Client(broker, "rate-sub")
        fast = Client(broker, "rate-other")
        clients += [subscriber, fast]
        for client in clients:
            client.connect()
        assert subscriber.subscribe("rate/#", 1) == 1
        assert fast.subscribe("other", 1) == 1
        publisher = raw(broker)
        assert publisher.connect("rate-pub").reason == 0
        started = time.monotonic()
        # All 60 in one write: the broker, not the client, spaces them out.
        publisher.send(b"".join(
            wire.publish("rate/t", str(index).encode(), version=V5) for index in range(60)))
        # Another client is not slowed down by the throttled one.
        fast.publish("other", b"ping", qos=1)
        assert fast.get(1.5).payload == b"ping"
        received = subscriber.expect(60, timeout=10)
        elapsed = time.monotonic() - started
        assert [m.payload for m in received] == [str(i).encode() for i in range(60)]
        # A burst of 20, then 40 at 20 per second: about 2 s.
        assert elapsed >= 1.5, f"60 messages in {elapsed:.2f} s: not throttled"
        publisher.close()
    finally:
        for client in clients:
            client.close()
        broker.cleanup()


def test_bytes_rate_throttles(tmp_path):
    broker = start(tmp_path, "max_bytes_rate = 2048\n")
    clients = []
    try:
        subscriber = Client(broker, "bytes-sub")
        publisher = Client(broker, "bytes-pub")
        clients += [subscriber, publisher]
        for client in clients:
            client.connect()
        assert subscriber.subscribe("bytes", 0) == 0
        started = time.monotonic()
        for _ in range(10):
            publisher.publish("bytes", b"b" * 1000, qos=0, wait=False)
        assert len(subscriber.expect(10, timeout=15)) == 10
        elapsed = time.monotonic() - started
        # About 10 kB at 2 kB/s after a 2 kB burst: about 4 s.
        assert elapsed >= 2.5, f"10 kB in {elapsed:.2f} s: not throttled"
    finally:
        for client in clients:
            client.close()
        broker.cleanup()


def test_connection_rate_closes_the_excess(tmp_path):
    broker = start(tmp_path, "max_connection_rate = 5\n")
    try:
        time.sleep(1.2)  # let the start-up probes' tokens come back
        # Open all 15 first (milliseconds), then see which got a CONNACK.
        flood = [raw(broker, V311) for _ in range(15)]
        accepted, closed = 0, 0
        for index, client in enumerate(flood):
            try:
                client.send(wire.connect(f"flood-{index}"))
                client.expect(wire.CONNACK, timeout=2)
                accepted += 1
            except (wire.Closed, ConnectionError, OSError):
                closed += 1
            finally:
                client.close()
        # A burst of 5, and a few more if accepting took a while.
        assert 1 <= accepted <= 8, (accepted, closed)
        assert closed >= 7, (accepted, closed)
        time.sleep(1.2)
        client = raw(broker, V311)
        assert client.connect("after-the-flood").reason == 0
        client.close()
    finally:
        broker.cleanup()
