"""Conformance: the client's Maximum Packet Size binds every packet the server
sends, acknowledgements and DISCONNECT included, not only PUBLISH (5.0
[MQTT-3.1.2-24]); optional properties such as the Reason String must be left
out rather than exceed it ([MQTT-3.2.2-19], [MQTT-3.4.2-2], [MQTT-3.14.2-3]...).

Known Tern deviations are strict expected failures on Tern only, with the
reason; docs/conformance.md lists them under "Known gaps"."""

from __future__ import annotations

import struct

import pytest

from harness import raw as wire
from harness.clients import V5

MAXIMUM_PACKET_SIZE = 0x27
AUTHENTICATION_METHOD = 0x15
REASON_STRING = 0x1F
LIMIT = 20  # bytes: room for any acknowledgement, DISCONNECT or CONNACK without properties


def size(packet: wire.Packet) -> int:
    return 1 + len(wire.varint(len(packet.body))) + len(packet.body)




def small_client(raw, client_id: str) -> wire.RawClient:
    client = raw(V5)
    assert client.connect(client_id, props={MAXIMUM_PACKET_SIZE: LIMIT}).reason == 0
    return client


def test_v5_puback_fits_the_clients_maximum_packet_size(raw):
    client = small_client(raw, "small-ack")
    client.send(wire.publish("plain/t", b"x", version=V5, qos=1, packet_id=1))
    puback = client.expect(wire.PUBACK)
    assert size(puback) <= LIMIT  # [MQTT-3.1.2-24]


@pytest.mark.parametrize("qos", [1, 2], ids=["puback", "pubrec"])
def test_v5_refusing_ack_leaves_out_a_reason_string_that_does_not_fit(raw, qos):
    client = small_client(raw, "small-refused")
    client.send(wire.publish("$SYS/conformance", b"x", version=V5, qos=qos, packet_id=5))
    received = []
    try:
        while True:
            packet = client.read(timeout=1.0)
            received.append(packet)
            if packet.kind in (wire.PUBACK, wire.PUBREC):
                break
    except (TimeoutError, wire.Closed):
        pass
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    assert not too_large, f"packets over the client's {LIMIT}-byte maximum: {too_large}"


def test_v5_disconnect_leaves_out_a_reason_string_that_does_not_fit(raw):
    client = small_client(raw, "small-disconnect")
    client.send(wire.packet(wire.DISCONNECT, 0x01, b""))  # reserved flag set: malformed
    received = client.wait_closed()
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    assert not too_large, f"packets over the client's {LIMIT}-byte maximum: {too_large}"


def test_v5_invalid_filter_answer_fits_the_clients_maximum_packet_size(raw):
    client = small_client(raw, "small-filter")
    client.send(wire.subscribe(1, [("bad/#/filter", 1)], version=V5))
    received = []
    try:
        while True:
            packet = client.read(timeout=1.0)
            received.append(packet)
            if packet.kind == wire.SUBACK:
                break
    except (TimeoutError, wire.Closed):
        pass
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    # [MQTT-3.9.2-1] for a SUBACK, [MQTT-3.14.2-3] for a DISCONNECT
    assert not too_large, f"packets over the client's {LIMIT}-byte maximum: {too_large}"


def test_v5_refusing_connack_fits_the_clients_maximum_packet_size(raw):
    client = raw(V5)
    client.send(wire.connect("small-auth", version=V5,
                             props={MAXIMUM_PACKET_SIZE: LIMIT,
                                    AUTHENTICATION_METHOD: "NO-SUCH-METHOD"}))
    received = client.wait_closed()
    assert received and received[0].kind == wire.CONNACK and received[0].reason >= 0x80
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    assert not too_large, f"[MQTT-3.2.2-19]: packets over {LIMIT} bytes: {too_large}"


def test_v5_pubcomp_for_an_unknown_identifier_fits_the_clients_maximum_packet_size(raw):
    client = small_client(raw, "small-pubcomp")
    client.send(wire.packet(wire.PUBREL, 0x02, struct.pack("!H", 77)))
    received = []
    try:
        while True:
            packet = client.read(timeout=1.0)
            received.append(packet)
            if packet.kind == wire.PUBCOMP:
                break
    except (TimeoutError, wire.Closed):
        pass
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    assert not too_large, f"[MQTT-3.7.2-2]: packets over {LIMIT} bytes: {too_large}"


def _until(client: wire.RawClient, kind: int) -> list[wire.Packet]:
    received = []
    try:
        while True:
            packet = client.read(timeout=1.0)
            received.append(packet)
            if packet.kind == kind:
                return received
    except (TimeoutError, wire.Closed):
        return received


def test_v5_pubrel_for_an_unknown_identifier_fits_the_clients_maximum_packet_size(raw):
    client = small_client(raw, "small-pubrel")
    client.send(wire.packet(wire.PUBREC, 0, struct.pack("!H", 99)))
    received = _until(client, wire.PUBREL)
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    assert not too_large, f"[MQTT-3.6.2-2]: packets over {LIMIT} bytes: {too_large}"


def test_v5_suback_and_unsuback_fit_the_clients_maximum_packet_size(raw):
    client = small_client(raw, "small-subs")
    client.send(wire.subscribe(1, [("small/a", 1), ("small/b", 2)], version=V5))
    received = _until(client, wire.SUBACK)
    body = struct.pack("!H", 2) + wire.properties(None) + wire.utf8("small/none")
    client.send(wire.packet(wire.UNSUBSCRIBE, 0x02, body))  # nothing to unsubscribe: 0x11
    received += _until(client, wire.UNSUBACK)
    assert [p.kind for p in received] == [wire.SUBACK, wire.UNSUBACK], received
    too_large = [(p.kind, size(p)) for p in received if size(p) > LIMIT]
    # 5.0 [MQTT-3.9.2-1], [MQTT-3.11.2-1]
    assert not too_large, f"packets over {LIMIT} bytes: {too_large}"


def test_v5_accepting_connack_fits_the_clients_maximum_packet_size(raw):
    client = raw(V5)
    connack = client.connect("small-connack", props={MAXIMUM_PACKET_SIZE: LIMIT})
    assert connack.reason == 0
    assert size(connack) <= LIMIT, f"CONNACK of {size(connack)} bytes, client maximum {LIMIT}"
