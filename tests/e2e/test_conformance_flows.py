"""Conformance: packet identifiers, the QoS 1 and 2 flows seen from both ends,
SUBACK and UNSUBACK contents, subscription replacement and redelivery.

Each test names the statements it checks, 3.1.1 id first, then 5.0 id
(docs/conformance.md maps every statement to its tests)."""

from __future__ import annotations

import struct

from harness import raw as wire
from harness.clients import V5


def packet_id(packet: wire.Packet) -> int:
    return struct.unpack_from("!H", packet.body)[0]


def ack(kind: int, identifier: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 0b0010) or PUBCOMP without a reason code."""
    return wire.packet(kind, 0x02 if kind == wire.PUBREL else 0, struct.pack("!H", identifier))


def with_dup(data: bytes) -> bytes:
    return bytes([data[0] | 0x08]) + data[1:]


def unsubscribe(identifier: int, filters: list[str], *, version: int) -> bytes:
    body = struct.pack("!H", identifier)
    if version == V5:
        body += wire.properties(None)
    for topic_filter in filters:
        body += wire.utf8(topic_filter)
    return wire.packet(wire.UNSUBSCRIBE, 0x02, body)


def reason_codes(packet: wire.Packet) -> list[int]:
    """The per-filter codes of a SUBACK or UNSUBACK (none in a 3.1.1 UNSUBACK)."""
    pos = 2
    if packet.version == V5:
        size, used = wire._read_varint(packet.body, pos)
        pos += used + size
    return list(packet.body[pos:])


def subscribed(client: wire.RawClient, topic: str, options: int, *, version: int) -> None:
    client.send(wire.subscribe(1, [(topic, options)], version=version))
    client.expect(wire.SUBACK)


def test_puback_carries_the_identifier_of_the_publish(raw, version):
    client = raw(version)
    client.connect("acker")
    client.send(wire.publish("flow/puback", b"x", version=version, qos=1, packet_id=0x1234))
    puback = client.expect(wire.PUBACK)
    # 3.1.1 [MQTT-2.3.1-6], [MQTT-4.3.2-2]; 5.0 [MQTT-2.2.1-5], [MQTT-4.3.2-4]
    assert packet_id(puback) == 0x1234
    if version == V5 and len(puback.body) > 2:
        assert puback.body[2] < 0x80, f"PUBACK reason {puback.body[2]:#x}"


def test_qos1_identifier_reused_after_puback_is_a_new_message(raw, mqtt, version):
    sub = mqtt("sub", version)
    sub.subscribe("flow/reuse", 1)
    client = raw(version)
    client.connect("reuser")
    client.send(wire.publish("flow/reuse", b"one", version=version, qos=1, packet_id=7))
    assert packet_id(client.expect(wire.PUBACK)) == 7
    # Same identifier, even with DUP set: a new message once PUBACK was sent.
    client.send(with_dup(wire.publish("flow/reuse", b"two", version=version, qos=1, packet_id=7)))
    assert packet_id(client.expect(wire.PUBACK)) == 7
    # 3.1.1 [MQTT-4.3.2-2]; 5.0 [MQTT-4.3.2-5]
    assert [m.payload for m in sub.expect(2)] == [b"one", b"two"]


def test_qos2_receiver_acknowledges_duplicates_and_delivers_once(raw, mqtt, version):
    sub = mqtt("sub", version)
    sub.subscribe("flow/q2", 2)
    sub.subscribe("flow/sentinel", 2)  # QoS 2 like the rest: paho hands QoS 2 over at PUBREL
    client = raw(version)
    client.connect("q2pub")
    first = wire.publish("flow/q2", b"once", version=version, qos=2, packet_id=9)
    client.send(first)
    assert packet_id(client.expect(wire.PUBREC)) == 9
    client.send(with_dup(first))  # the publisher did not see the PUBREC
    # 3.1.1 [MQTT-4.3.3-2]; 5.0 [MQTT-4.3.3-8], [MQTT-4.3.3-10]: PUBREC again ...
    assert packet_id(client.expect(wire.PUBREC)) == 9
    client.send(ack(wire.PUBREL, 9))
    # ... PUBCOMP with the PUBREL's identifier (3.1.1 [MQTT-2.3.1-6]; 5.0 [MQTT-4.3.3-11])
    assert packet_id(client.expect(wire.PUBCOMP)) == 9
    # After PUBCOMP the identifier names a new message (5.0 [MQTT-4.3.3-12]).
    client.send(wire.publish("flow/q2", b"again", version=version, qos=2, packet_id=9))
    assert packet_id(client.expect(wire.PUBREC)) == 9
    client.send(ack(wire.PUBREL, 9))
    client.expect(wire.PUBCOMP)
    mqtt("sentinel", version).publish("flow/sentinel", b"", qos=2)
    # ... and no duplicate reaches the subscriber.
    assert [m.payload for m in sub.until("flow/sentinel")] == [b"once", b"again", b""]


def test_pubrel_for_an_unknown_identifier_gets_a_pubcomp(raw, version):
    client = raw(version)
    client.connect("stray")
    client.send(ack(wire.PUBREL, 77))
    pubcomp = client.expect(wire.PUBCOMP)
    # 3.1.1 [MQTT-4.3.3-2]; 5.0 [MQTT-4.3.3-11] (0x92 "not found" is allowed in 5.0)
    assert packet_id(pubcomp) == 77
    if version == V5 and len(pubcomp.body) > 2:
        assert pubcomp.body[2] in (0x00, 0x92), f"PUBCOMP reason {pubcomp.body[2]:#x}"


def test_dup_flag_is_not_propagated_and_qos0_goes_out_with_dup_0(raw, version):
    sub = raw(version)
    sub.connect("dupsub")
    subscribed(sub, "flow/dup", 1, version=version)
    pub = raw(version)
    pub.connect("duppub")
    pub.send(with_dup(wire.publish("flow/dup", b"d", version=version, qos=1, packet_id=3)))
    pub.expect(wire.PUBACK)
    delivered = sub.expect(wire.PUBLISH)
    # 3.1.1 and 5.0 [MQTT-3.3.1-3]: DUP on the way out says only whether it is a resend.
    assert not delivered.flags & 0x08, "DUP copied from the incoming PUBLISH"
    assert delivered.flags & 0x06 == 0x02
    sub.send(ack(wire.PUBACK, delivered.publish_fields()[1]))
    pub.send(wire.publish("flow/dup", b"q0", version=version, qos=0))
    zero = sub.expect(wire.PUBLISH)
    # [MQTT-3.3.1-2]; 5.0 [MQTT-4.3.1-1]: QoS 0 with DUP 0, and no packet identifier.
    assert zero.flags & 0x0E == 0
    assert zero.publish_fields()[1:] == (None, b"q0")


def test_server_packet_identifiers_are_non_zero_and_unused(raw, mqtt, version):
    sub = raw(version)
    sub.connect("ids")
    subscribed(sub, "flow/ids", 2, version=version)
    pub = mqtt("pub", version)
    for i in range(6):
        pub.publish("flow/ids", str(i).encode(), qos=1 + i % 2)
    received = [sub.expect(wire.PUBLISH) for _ in range(6)]
    identifiers = [p.publish_fields()[1] for p in received]
    # 3.1.1 [MQTT-2.3.1-1], [MQTT-2.3.1-4]; 5.0 [MQTT-2.2.1-4], [MQTT-4.3.2-1], [MQTT-4.3.3-1];
    # first sent with DUP 0: 5.0 [MQTT-4.3.2-2], [MQTT-4.3.3-2]
    assert all(identifiers), f"identifier 0 used: {identifiers}"
    assert len(set(identifiers)) == 6, f"identifiers reused while in flight: {identifiers}"
    assert not any(p.flags & 0x08 for p in received)
    assert [p.publish_fields()[2] for p in received] == [str(i).encode() for i in range(6)]


def test_suback_has_the_identifier_and_one_code_per_filter_in_order(raw, version):
    client = raw(version)
    client.connect("suber")
    client.send(wire.subscribe(0x4242, [("sa/a", 2), ("sa/b", 0), ("sa/c/#", 1)], version=version))
    suback = client.expect(wire.SUBACK)
    # [MQTT-3.8.4-1], [MQTT-3.8.4-2]; one code per filter, in order: 3.1.1 [MQTT-3.8.4-4],
    # [MQTT-3.8.4-5], [MQTT-3.9.3-1]; 5.0 [MQTT-3.8.4-5], [MQTT-3.8.4-6], [MQTT-3.9.3-1]
    assert packet_id(suback) == 0x4242
    assert reason_codes(suback) == [2, 0, 1]


def test_unsuback_answers_every_unsubscribe_with_its_identifier(raw, version):
    client = raw(version)
    client.connect("unsuber")
    subscribed(client, "ua/yes", 1, version=version)
    client.send(unsubscribe(0x3131, ["ua/yes", "ua/never"], version=version))
    unsuback = client.expect(wire.UNSUBACK)
    # [MQTT-3.10.4-4], [MQTT-3.10.4-5] (even for a filter never subscribed), [MQTT-3.10.4-6]
    assert packet_id(unsuback) == 0x3131
    if version == V5:
        # 5.0 [MQTT-3.11.3-1], [MQTT-3.11.3-2]: one code per filter, in order.
        assert reason_codes(unsuback) == [0x00, 0x11]
    client.send(wire.pingreq())
    client.expect(wire.PINGRESP)  # only one UNSUBACK came before


def test_identical_filter_replaces_the_subscription_and_resends_retained(mqtt, version):
    pub = mqtt("pub", version)
    pub.publish("rep/t", b"kept", qos=1, retain=True)
    sub = mqtt("sub", version)
    assert sub.subscribe("rep/t", 0) == 0
    assert sub.get().payload == b"kept"
    assert sub.subscribe("rep/t", 2) == 2
    # Retained messages are sent again: 3.1.1 [MQTT-3.8.4-3]; 5.0 [MQTT-3.8.4-4] (Retain Handling 0)
    again = sub.get()
    assert (again.payload, again.retain) == (b"kept", True)
    sub.subscribe("rep/sentinel", 2)  # QoS 2 like the rest: paho hands QoS 2 over at PUBREL
    pub.publish("rep/t", b"live", qos=2)
    pub.publish("rep/sentinel", b"", qos=2)
    # The subscription was replaced, not added: one copy, at the new QoS (5.0 [MQTT-3.8.4-3]).
    received = [(m.topic, m.payload, m.qos) for m in sub.until("rep/sentinel")]
    assert received == [("rep/t", b"live", 2), ("rep/sentinel", b"", 2)]


def test_unsubscribe_compares_filters_character_by_character(mqtt, version):
    sub = mqtt("sub", version)
    sub.subscribe("cmp/+", 1)
    sub.unsubscribe("cmp/x")  # matches the topic, but is not the subscribed filter
    pub = mqtt("pub", version)
    pub.publish("cmp/x", b"still", qos=1)
    assert sub.get().payload == b"still"  # [MQTT-3.10.4-1]
    sub.unsubscribe("cmp/+")
    sub.subscribe("cmp-sentinel", 1)
    pub.publish("cmp/x", b"gone", qos=1)
    pub.publish("cmp-sentinel", b"", qos=1)
    assert [m.topic for m in sub.until("cmp-sentinel")] == ["cmp-sentinel"]


def test_pubrel_not_publish_is_resent_after_reconnect(raw, mqtt, version):
    props = {wire.SESSION_EXPIRY_INTERVAL: 300} if version == V5 else None
    first = raw(version)
    assert first.connect("halfdone", clean=False, props=props).reason == 0
    subscribed(first, "flow/rel", 2, version=version)
    mqtt("pub", version).publish("flow/rel", b"exactly once", qos=2)
    publish = first.expect(wire.PUBLISH)
    identifier = publish.publish_fields()[1]
    first.send(ack(wire.PUBREC, identifier))
    assert packet_id(first.expect(wire.PUBREL)) == identifier
    first.close()  # without PUBCOMP

    second = raw(version)
    assert second.connect("halfdone", clean=False, props=props).session_present
    # 3.1.1 [MQTT-4.4.0-1], [MQTT-4.3.3-1]; 5.0 [MQTT-4.4.0-1], [MQTT-4.3.3-6]:
    # the PUBREL again, with its identifier, and never the PUBLISH.
    again = second.read()
    assert again.kind == wire.PUBREL, f"expected PUBREL, got {again}"
    assert again.flags == 0x02 and packet_id(again) == identifier
    second.send(ack(wire.PUBCOMP, identifier))
    second.send(wire.pingreq())
    assert second.read().kind == wire.PINGRESP
