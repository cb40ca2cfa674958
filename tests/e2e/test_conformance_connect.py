"""Conformance: CONNECT validation and refusal, CONNACK contents, wills,
retained messages across sessions, and MQTT 5 properties the server must
leave out.

Each test names the statements it checks, 3.1.1 id first, then 5.0 id
(docs/conformance.md maps every statement to its tests)."""

from __future__ import annotations

import struct

import pytest

from harness import raw as wire
from harness.clients import V5, V311, Will

REQUEST_PROBLEM_INFORMATION = 0x17
REQUEST_RESPONSE_INFORMATION = 0x19
AUTHENTICATION_METHOD = 0x15
RESPONSE_INFORMATION = 0x1A
REASON_STRING = 0x1F
USER_PROPERTY = 0x26


def raw_connect(version: int, flags: int, payload: bytes) -> bytes:
    """A CONNECT with the given flags byte and payload, exactly as written."""
    body = wire.utf8("MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
    if version == V5:
        body += wire.properties(None)
    return wire.packet(wire.CONNECT, 0, body + payload)


def ack_properties(packet: wire.Packet) -> dict:
    """Properties of an MQTT 5 PUBACK, PUBREC, PUBREL or PUBCOMP (after the
    identifier and reason code), {} in the short forms."""
    if len(packet.body) <= 3:
        return {}
    return property_ids(packet.body[3:])


def property_ids(block: bytes) -> dict:
    """Identifier -> raw value of each property in a block (length prefix
    included); a user property maps to how many there are."""
    size, pos = wire._read_varint(block, 0)
    end, found = pos + size, {}
    widths = {0: 1, 1: 2, 2: 4}  # byte, two-byte and four-byte integers (harness kinds)
    while pos < end:
        ident, used = wire._read_varint(block, pos)
        pos += used
        kind = wire.PROPERTY_KINDS[ident]
        if kind in widths:
            value, pos = block[pos:pos + widths[kind]], pos + widths[kind]
        elif kind == 3:  # variable byte integer
            value, used = wire._read_varint(block, pos)
            pos += used
        else:  # string, binary data, or a pair of strings
            start = pos
            for _ in range(2 if ident == USER_PROPERTY else 1):
                (length,) = struct.unpack_from("!H", block, pos)
                pos += 2 + length
            value = block[start:pos]
        found[ident] = found.get(ident, 0) + 1 if ident == USER_PROPERTY else value
    return found


def publish_properties(packet: wire.Packet) -> dict:
    (length,) = struct.unpack_from("!H", packet.body)
    pos = 2 + length + (2 if packet.flags & 0x06 else 0)
    return property_ids(packet.body[pos:])


MALFORMED_CONNECTS = {
    # name: (flags, payload, statements)
    "reserved-flag": (0x03, wire.utf8("c"), "[MQTT-3.1.2-3]"),
    "will-qos-without-will": (0x0A, wire.utf8("c"), "3.1.1 [MQTT-3.1.2-13]; 5.0 [MQTT-3.1.2-11]"),
    "will-retain-without-will": (0x22, wire.utf8("c"), "3.1.1 [MQTT-3.1.2-15]; 5.0 [MQTT-3.1.2-13]"),
    "will-qos-3": (0x1E, None, "3.1.1 [MQTT-3.1.2-14]; 5.0 [MQTT-3.1.2-12]"),
    "user-name-flag-without-user-name": (0x82, wire.utf8("c"), "3.1.1 [MQTT-3.1.2-19]; 5.0 [MQTT-3.1.2-17]"),
    "user-name-without-its-flag": (0x02, wire.utf8("c") + wire.utf8("u"),
                                   "3.1.1 [MQTT-3.1.2-18]; 5.0 [MQTT-3.1.2-16]"),
    "password-without-its-flag": (0x82, wire.utf8("c") + wire.utf8("u") + wire.utf8("pw"),
                                  "3.1.1 [MQTT-3.1.2-20]; 5.0 [MQTT-3.1.2-18]"),
    "password-flag-without-password": (0xC2, wire.utf8("c") + wire.utf8("u"),
                                       "3.1.1 [MQTT-3.1.2-21]; 5.0 [MQTT-3.1.2-19]"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CONNECTS))
def test_malformed_connect_is_closed(raw, version, case):
    flags, payload, _statements = MALFORMED_CONNECTS[case]
    if payload is None:  # a will topic and message follow the client id
        payload = wire.utf8("c") + (wire.properties(None) if version == V5 else b"") + \
            wire.utf8("w/t") + wire.utf8("m")
    client = raw(version)
    client.send(raw_connect(version, flags, payload))
    received = client.wait_closed()
    # 3.1.1 [MQTT-3.1.4-1]: close without a CONNACK. 5.0 [MQTT-3.1.4-1]: close, a CONNACK
    # with an error code (0x80 or above) being allowed first ([MQTT-4.13.1-1]).
    if version == V311:
        assert received == [], f"3.1.1 CONNACK sent for a malformed CONNECT: {received}"
    else:
        assert all(p.kind == wire.CONNACK and p.reason >= 0x80 for p in received), received


def test_v311_password_without_user_name_is_closed(raw):
    client = raw(V311)
    client.send(raw_connect(V311, 0x42, wire.utf8("c") + wire.utf8("pw")))
    # 3.1.1 [MQTT-3.1.2-22], [MQTT-3.1.4-1]
    assert client.wait_closed() == []


def test_23_character_alphanumeric_client_id_is_accepted(raw, version):
    client = raw(version)
    client_id = "ABCDEFGHIJKLMnopqrst789"
    assert len(client_id) == 23
    assert client.connect(client_id).reason == 0  # [MQTT-3.1.3-5]


def test_connack_flags_and_absent_v5_properties(raw, version):
    client = raw(version)
    props = {REQUEST_RESPONSE_INFORMATION: 0} if version == V5 else None
    connack = client.connect("flags", props=props)
    assert connack.reason == 0
    assert connack.body[0] & 0xFE == 0, "reserved CONNACK flag bits set"  # 5.0 [MQTT-3.2.2-1]
    if version == V5:
        assert RESPONSE_INFORMATION not in connack.props  # 5.0 [MQTT-3.1.2-28]
        assert AUTHENTICATION_METHOD not in connack.props  # 5.0 [MQTT-4.12.0-6]


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_refused_connect_is_closed_and_what_follows_is_not_processed(raw, mqtt, version):
    client = raw(version)
    if version == V311:
        refused = wire.connect("", version=V311, clean=False)  # [MQTT-3.1.3-8]: code 0x02
    else:
        refused = wire.connect("authy", version=V5, props={AUTHENTICATION_METHOD: "NO-SUCH-METHOD"})
    after = wire.publish("refused/t", b"must not be processed", version=version, retain=True)
    client.send(refused + after)
    received = client.wait_closed()
    assert received and received[0].kind == wire.CONNACK, received
    connack = received[0]
    # 3.1.1 [MQTT-3.2.2-4], [MQTT-3.2.2-5]; 5.0 [MQTT-3.2.2-6], [MQTT-3.2.2-7], [MQTT-4.12.0-1]
    assert connack.reason != 0 and not connack.session_present
    if version == V5:
        assert connack.reason >= 0x80
    assert len(received) == 1, f"more than one packet after a refusal: {received}"
    # 3.1.1 [MQTT-3.1.4-5]; 5.0 [MQTT-3.1.4-6]: the PUBLISH after it was not processed.
    sub = mqtt("late", version)
    sub.subscribe("refused/#", 1)
    mqtt("sentinel", version).publish("refused/sentinel", b"", qos=1)
    assert [m.topic for m in sub.until("refused/sentinel")] == ["refused/sentinel"]


def test_will_with_retain_0_is_published_as_non_retained(mqtt, version):
    watch = mqtt("watch", version)
    watch.subscribe("cwill/t", 1)
    client = mqtt("mortal", version, will=Will("cwill/t", b"bye", qos=1, retain=False))
    client.drop()
    message = watch.get()
    # 3.1.1 [MQTT-3.1.2-16]; 5.0 [MQTT-3.1.2-14]
    assert (message.payload, message.retain) == (b"bye", False)
    late = mqtt("late", version)
    late.subscribe("cwill/#", 1)
    mqtt("sentinel", version).publish("cwill/sentinel", b"", qos=1)
    assert [m.topic for m in late.until("cwill/sentinel")] == ["cwill/sentinel"]


def test_no_will_is_published_without_the_will_flag(mqtt, version):
    watch = mqtt("watch", version)
    watch.subscribe("#", 1)
    client = mqtt("willless", version)
    client.drop()
    mqtt("sentinel", version).publish("nowill/sentinel", b"", qos=1)
    # 3.1.1 [MQTT-3.1.2-12]: nothing is published for the lost connection.
    assert [m.topic for m in watch.until("nowill/sentinel")] == ["nowill/sentinel"]


def test_retained_message_outlives_the_session_of_its_publisher(mqtt, version):
    pub = mqtt("shortlived", version)  # clean session / session expiry 0
    pub.publish("keep/t", b"still here", qos=1, retain=True)
    pub.disconnect()
    sub = mqtt("later", version)
    sub.subscribe("keep/t", 1)
    message = sub.get()
    # 3.1.1 [MQTT-3.1.2-7]: retained messages are not part of the session.
    assert (message.payload, message.retain) == (b"still here", True)


def test_bom_in_a_topic_is_neither_skipped_nor_stripped(mqtt, version):
    bom = "\ufeffbom/t"
    with_bom = mqtt("with", version)
    with_bom.subscribe(bom, 1)
    without = mqtt("without", version)
    without.subscribe("bom/t", 1)
    pub = mqtt("pub", version)
    pub.publish(bom, b"zwnbsp", qos=1)
    pub.publish("bom/t", b"plain", qos=1)
    # 3.1.1 [MQTT-1.5.3-3]; 5.0 [MQTT-1.5.4-3]; [MQTT-4.7.3-4]
    message = with_bom.get()
    assert (message.topic, message.payload) == (bom, b"zwnbsp")
    assert [m.payload for m in without.until("bom/t")] == [b"plain"]


# -- MQTT 5 only ---------------------------------------------------------

def test_v5_no_reason_string_or_user_property_without_problem_information(raw):
    client = raw(V5)
    client.connect("quiet", props={REQUEST_PROBLEM_INFORMATION: 0})
    # Publishing to $SYS is refused by Tern (PUBACK 0x87), with a Reason String
    # when problem information is requested; any broker may answer as it likes.
    client.send(wire.publish("$SYS/conformance", b"x", version=V5, qos=1, packet_id=5))
    client.send(wire.publish("nobody/listens", b"x", version=V5, qos=1, packet_id=6))
    client.send(wire.publish("$SYS/conformance", b"x", version=V5, qos=2, packet_id=7))
    # The order of the acknowledgements is not checked here (Tern answers a refusal at once,
    # ahead of an earlier PUBACK that waits for durability; no numbered statement binds a
    # server to acknowledge in order).
    acks = {}
    for _ in range(3):
        ack = client.read()
        acks[(ack.kind, struct.unpack_from("!H", ack.body)[0])] = ack
    assert sorted(acks) == [(wire.PUBACK, 5), (wire.PUBACK, 6), (wire.PUBREC, 7)], acks
    for ack in acks.values():
        props = ack_properties(ack)
        # 5.0 [MQTT-3.1.2-29]
        assert REASON_STRING not in props and USER_PROPERTY not in props, props


def test_v5_topic_alias_does_not_carry_over_to_a_new_connection(raw):
    first = raw(V5)
    maximum = first.connect("aliaser").props.get(wire.TOPIC_ALIAS_MAXIMUM, 0)
    if not maximum:
        pytest.skip("the broker accepts no topic aliases")
    first.send(wire.publish("alias/t", b"set", version=V5, props={wire.TOPIC_ALIAS: 1}))
    first.send(wire.disconnect(0))
    first.wait_closed()
    second = raw(V5)
    second.connect("aliaser")
    second.send(wire.publish("", b"use", version=V5, props={wire.TOPIC_ALIAS: 1}))
    received = second.wait_closed()  # 5.0 [MQTT-3.3.2-7]: alias 1 is unknown here
    assert all(p.kind == wire.DISCONNECT and p.reason >= 0x80 for p in received), received


def test_v5_server_sends_no_topic_alias_to_a_client_without_a_maximum(raw, mqtt):
    sub = raw(V5)
    sub.connect("noalias")  # no Topic Alias Maximum: 0
    sub.send(wire.subscribe(1, [("noalias/t", 1)], version=V5))
    sub.expect(wire.SUBACK)
    pub = mqtt("pub", V5)
    for i in range(3):
        pub.publish("noalias/t", str(i).encode(), qos=1)
    for _ in range(3):
        publish = sub.expect(wire.PUBLISH)
        # 5.0 [MQTT-3.1.2-26], [MQTT-3.1.2-27], [MQTT-3.3.2-11]
        assert wire.TOPIC_ALIAS not in publish_properties(publish)
        assert publish.publish_fields()[0] == "noalias/t"
        sub.send(wire.puback(publish.publish_fields()[1]))


def test_v5_server_disconnect_carries_no_session_expiry(raw):
    old = raw(V5)
    old.connect("taken", props={wire.SESSION_EXPIRY_INTERVAL: 60})
    new = raw(V5)
    new.connect("taken", props={wire.SESSION_EXPIRY_INTERVAL: 60})
    received = old.wait_closed()
    # 5.0 [MQTT-3.14.4-1], [MQTT-3.14.4-2]: at most one DISCONNECT, the last packet, then close
    assert [p.kind for p in received] in ([], [wire.DISCONNECT]), received
    for packet in received:
        # 5.0 [MQTT-3.14.2-2]; [MQTT-3.14.0-1] holds as a CONNACK came first
        assert wire.SESSION_EXPIRY_INTERVAL not in packet.props, packet.props
