"""A misbehaving connection is closed, and only that one: while each test
runs, steady QoS 1 traffic between two other clients must go on without a
loss ([MQTT-4.8.0-1] in 3.1.1, [MQTT-4.13.1-1] in 5.0)."""

import socket

import pytest

from harness import raw as wire
from harness.clients import V5, V311


def assert_closed_as_misbehaving(client, *, timeout=5.0):
    """The broker closes the connection, perhaps after a DISCONNECT with an
    error reason (5.0), and sends nothing else."""
    received = client.wait_closed(timeout)
    for packet in received:
        assert packet.kind == wire.DISCONNECT, f"unexpected packet before close: {packet}"
        assert packet.reason >= 0x80, f"DISCONNECT reason {packet.reason:#x} is not an error"
    return received


def test_garbage_before_connect_closes_the_connection(raw, steady):
    client = raw(V311)
    client.send(b"\xff\xff\xff\xff\x7f this is not MQTT" * 4)
    assert_closed_as_misbehaving(client)
    steady.stop()


def test_http_request_closes_the_connection(raw, steady):
    client = raw(V311)
    client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert_closed_as_misbehaving(client)
    steady.stop()


def test_publish_before_connect_closes_the_connection(raw, steady):
    client = raw(V311)
    client.send(wire.publish("robust/early", b"too soon", qos=0))
    assert_closed_as_misbehaving(client)  # [MQTT-3.1.0-1]
    steady.stop()


def test_second_connect_closes_the_connection(raw, steady, version):
    client = raw(version)
    assert client.connect("twice").reason == 0
    client.send(wire.connect("twice", version=version))
    received = assert_closed_as_misbehaving(client)  # [MQTT-3.1.0-2]
    if version == V5 and received:
        assert received[-1].reason == 0x82, f"DISCONNECT {received[-1].reason:#x}, want 0x82"
    steady.stop()


def test_reserved_packet_type_after_connect_closes_the_connection(raw, steady, version):
    client = raw(version)
    client.connect("reserved")
    client.send(bytes([0x00, 0x00]))  # packet type 0 is reserved
    assert_closed_as_misbehaving(client)
    steady.stop()


def test_wrong_fixed_header_flags_close_the_connection(raw, steady, version):
    client = raw(version)
    client.connect("badflags")
    good = wire.subscribe(1, [("robust/x", 0)], version=version)
    client.send(bytes([good[0] & 0xF0]) + good[1:])  # SUBSCRIBE flags must be 0b0010
    assert_closed_as_misbehaving(client)  # [MQTT-3.8.1-1]
    steady.stop()


def test_overlong_remaining_length_closes_the_connection(raw, steady, version):
    client = raw(version)
    client.connect("overlong")
    client.send(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))  # 5-byte remaining length
    assert_closed_as_misbehaving(client)
    steady.stop()


def test_invalid_utf8_topic_closes_the_connection(mqtt, raw, steady, version):
    watcher = mqtt("watcher", version)
    watcher.subscribe("#", 0)
    client = raw(version)
    client.connect("badutf8")
    body = b"\x00\x04ro\xff\xfe" + (b"\x00" if version == V5 else b"") + b"payload"
    client.send(bytes([0x30, len(body)]) + body)
    assert_closed_as_misbehaving(client)  # [MQTT-1.5.3-1] / [MQTT-1.5.4-1]
    steady.stop()
    assert not [m for m in watcher.drain() if not m.topic.startswith("steady/")]


def test_wildcard_in_publish_topic_closes_the_connection(mqtt, raw, steady, version):
    client = raw(version)
    client.connect("wildpub")
    client.send(wire.publish("robust/+/x", b"no", version=version))
    assert_closed_as_misbehaving(client)  # [MQTT-3.3.2-2]
    steady.stop()


def test_truncated_packet_then_close_is_treated_as_a_lost_connection(mqtt, raw, steady, version):
    watcher = mqtt("watcher", version)
    watcher.subscribe("robust/will", 1)
    client = raw(version)
    client.connect("halfway", will=wire.Will("robust/will", b"cut off", qos=1))
    whole = wire.publish("robust/half", b"x" * 200, version=version, qos=1)
    client.send(whole[: len(whole) // 2])
    client.close()
    assert watcher.get().payload == b"cut off"
    steady.stop()


def test_truncated_connect_then_close_does_no_harm(raw, steady):
    client = raw(V311)
    whole = wire.connect("cut", will=wire.Will("robust/never", b"x"))
    client.send(whole[:7])
    client.close()
    steady.stop()


def test_packet_over_the_broker_maximum_closes_the_connection(mqtt, raw, steady, version):
    probe = mqtt("probe", V5)
    maximum = probe.connack.properties.get("MaximumPacketSize")
    if maximum is None:
        pytest.skip("the broker declares no Maximum Packet Size in CONNACK")
    if maximum > 8 * 1024 * 1024:
        pytest.skip(f"the broker's Maximum Packet Size ({maximum}) is too large to exceed here")
    probe.subscribe("robust/big", 1)

    client = raw(version)
    client.connect("oversized")
    packet = wire.publish("robust/big", b"x" * (maximum + 1024), version=version, qos=1)
    try:
        client.send(packet)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass  # closed before the whole packet was read: fine
    received = assert_closed_as_misbehaving(client)
    if version == V5 and received:
        assert received[-1].reason == 0x95, f"DISCONNECT {received[-1].reason:#x}, want 0x95"
    steady.stop()
    probe.assert_no_message(within=0.2)


def test_many_abandoned_connections_do_no_harm(broker, steady):
    sockets = [socket.create_connection((broker.host, broker.port), timeout=5) for _ in range(50)]
    for index, sock in enumerate(sockets):
        if index % 2:
            sock.sendall(wire.connect(f"abandoned-{index}"))
    for sock in sockets:
        sock.close()
    steady.stop()


def test_invalid_topic_filter_is_refused(raw, steady, version):
    client = raw(version)
    client.connect("badfilter")
    client.send(wire.subscribe(1, [("robust/#/x", 1)], version=version))
    try:
        suback = client.read()
    except wire.Closed:
        suback = None  # closing the connection is allowed ([MQTT-4.8.0-1], 5.0 4.13)
    if suback is not None and suback.kind == wire.SUBACK:
        assert suback.body[-1] >= 0x80, f"invalid filter granted: SUBACK {suback.body!r}"
    elif suback is not None:
        assert suback.kind == wire.DISCONNECT and suback.reason >= 0x80, suback
    steady.stop()


# -- MQTT 5 protocol errors -----------------------------------------------

def test_v5_topic_alias_above_the_maximum_closes_the_connection(raw, steady):
    client = raw(V5)
    maximum = client.connect("alias-high").props.get(wire.TOPIC_ALIAS_MAXIMUM, 0)
    client.send(wire.publish("robust/alias", b"x", version=V5, props={wire.TOPIC_ALIAS: maximum + 1}))
    received = assert_closed_as_misbehaving(client)  # [MQTT-3.3.2-9]
    if received:
        assert received[-1].reason == 0x94, f"DISCONNECT {received[-1].reason:#x}, want 0x94"
    steady.stop()


def test_v5_topic_alias_zero_closes_the_connection(raw, steady):
    client = raw(V5)
    client.connect("alias-zero")
    client.send(wire.publish("robust/alias", b"x", version=V5, props={wire.TOPIC_ALIAS: 0}))
    assert_closed_as_misbehaving(client)  # [MQTT-3.3.2-8]; the spec names no reason code
    steady.stop()


def test_v5_unknown_topic_alias_closes_the_connection(raw, steady):
    client = raw(V5)
    client.connect("alias-unknown")
    client.send(wire.publish("", b"x", version=V5, props={wire.TOPIC_ALIAS: 1}))  # never mapped
    received = assert_closed_as_misbehaving(client)
    if received:
        assert received[-1].reason == 0x82, f"DISCONNECT {received[-1].reason:#x}, want 0x82"
    steady.stop()


@pytest.mark.xfail_on("mosquitto", reason="grants a shared subscription with No Local set")
def test_v5_no_local_on_a_shared_subscription_closes_the_connection(raw, steady):
    client = raw(V5)
    client.connect("shared-nolocal")
    client.send(wire.subscribe(1, [("$share/g/robust", 0x04 | 1)], version=V5))
    received = assert_closed_as_misbehaving(client, timeout=2)  # [MQTT-3.8.3-4]
    if received:
        assert received[-1].reason == 0x82, f"DISCONNECT {received[-1].reason:#x}, want 0x82"
    steady.stop()
