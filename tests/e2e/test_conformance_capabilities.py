"""Conformance: a server that supports less than MQTT allows (QoS 2, retained
messages) says so in CONNACK and still behaves as the standard requires.
These tests run their own broker, configured with `--max-qos 1
--retain-available false --allow-zero-length-clientid false` (Tern) or the
matching `max_qos`, `retain_available` and `allow_zero_length_clientid`
options (Mosquitto).

Each test names the statements it checks (5.0 ids; docs/conformance.md maps
every statement to its tests)."""

from __future__ import annotations

import pytest

from harness import raw as wire
from harness.broker import Broker, broker_kind
from harness.clients import V5

MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25


class LimitedBroker(Broker):
    """The broker under test with QoS 2 and retained messages switched off."""

    def _command(self) -> list[str]:
        command = super()._command()
        if self.kind == "tern":
            command += ["--max-qos", "1", "--retain-available", "false",
                        "--allow-zero-length-clientid", "false"]
        return command

    def _mosquitto_config(self):
        path = super()._mosquitto_config()
        path.write_text(path.read_text() + "max_qos 1\nretain_available false\n"
                        "allow_zero_length_clientid false\n")
        return path


@pytest.fixture
def limited(tmp_path):
    instance = LimitedBroker(broker_kind(), tmp_path)
    try:
        instance.start_fresh()
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def client(limited):
    created = []

    def make() -> wire.RawClient:
        raw = wire.RawClient(limited.host, limited.port, version=V5)
        created.append(raw)
        return raw

    yield make
    for raw in created:
        raw.close()


def test_v5_limits_are_announced_and_subscribe_still_accepts_qos_2(client):
    sub = client()
    connack = sub.connect("limited")
    assert connack.reason == 0
    # 5.0 [MQTT-3.2.2-9]: Maximum QoS sent; Retain Available 0 sent (3.2.2.3.5)
    assert connack.props.get(MAXIMUM_QOS) == 1
    assert connack.props.get(RETAIN_AVAILABLE) == 0
    sub.send(wire.subscribe(7, [("lim/t", 2)], version=V5))
    suback = sub.expect(wire.SUBACK)
    # 5.0 [MQTT-3.2.2-10]: a Requested QoS of 2 is accepted (granted at most 1).
    assert suback.body[-1] in (0, 1), f"SUBACK code {suback.body[-1]:#x}"


@pytest.mark.parametrize("will,reason", [
    (wire.Will("lim/will", b"w", qos=2), 0x9B),  # 5.0 [MQTT-3.2.2-12]
    (wire.Will("lim/will", b"w", qos=0, retain=True), 0x9A),  # 5.0 [MQTT-3.2.2-13]
], ids=["will-qos-2", "will-retain"])
def test_v5_will_beyond_the_servers_capabilities_is_refused(client, will, reason):
    raw = client()
    raw.send(wire.connect("lim-will", version=V5, will=will))
    received = raw.wait_closed()
    assert received and received[0].kind == wire.CONNACK, received
    # The reason code is a SHOULD; refusing (0x80 or above) and closing are the MUSTs.
    assert received[0].reason >= 0x80 and not received[0].session_present
    if received[0].reason != reason:
        pytest.fail(f"CONNACK {received[0].reason:#x}, the standard suggests {reason:#x}")


@pytest.mark.parametrize("qos,retain", [(2, False), (1, True)], ids=["qos-2", "retain"])
def test_v5_publish_beyond_the_servers_capabilities_closes(client, qos, retain):
    raw = client()
    raw.connect("lim-pub")
    raw.send(wire.publish("lim/p", b"x", version=V5, qos=qos, retain=retain, packet_id=1))
    received = raw.wait_closed()
    # Client obligations [MQTT-3.2.2-11], [MQTT-3.2.2-14]: the server answers with a
    # DISCONNECT (0x9B QoS not supported / 0x9A Retain not supported), then closes.
    assert all(p.kind == wire.DISCONNECT and p.reason >= 0x80 for p in received), received


def test_v5_rejected_client_identifier_is_closed(client):
    raw = client()
    raw.send(wire.connect("", version=V5))
    received = raw.wait_closed()
    # 5.0 [MQTT-3.1.3-8]: a refusing CONNACK is allowed (0x85 suggested; Mosquitto sends
    # 0x80), then close.
    assert len(received) <= 1, received
    for packet in received:
        assert packet.kind == wire.CONNACK and packet.reason >= 0x80, packet
