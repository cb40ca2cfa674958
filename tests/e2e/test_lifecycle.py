"""Starting, stopping and crashing the broker process."""

import pytest

from harness import raw as wire
from harness.clients import V5


def test_sigterm_stops_the_broker_with_exit_code_0(broker, mqtt, version):
    mqtt("connected", version).subscribe("life/t", 1)
    assert broker.stop() == 0


def test_sigterm_closes_client_connections(broker, raw, version):
    client = raw(version)
    client.connect("bystander")
    broker.stop()
    client.wait_closed(timeout=2)


@pytest.mark.xfail_on(
    "mosquitto", reason="closes connections on SIGTERM without DISCONNECT 0x8B")
def test_v5_sigterm_sends_disconnect_server_shutting_down(broker, raw):
    client = raw(V5)
    client.connect("listener")
    broker.stop()
    received = client.wait_closed(timeout=2)
    reasons = [p.reason for p in received if p.kind == wire.DISCONNECT]
    assert reasons == [0x8B], f"received {received}, want DISCONNECT 0x8B (server shutting down)"


def test_broker_starts_again_after_being_killed(broker, mqtt, version):
    mqtt("before", version, clean=False).subscribe("life/crash", 1)
    broker.kill()
    broker.start()
    client = mqtt("after", version)
    client.subscribe("life/crash", 1)
    client.publish("life/crash", b"alive", qos=1)
    assert client.get().payload == b"alive"


def test_broker_restarts_on_the_same_port_with_clients_connected(broker, mqtt, version):
    first = mqtt("survivor", version)
    broker.restart()
    first.wait_disconnected()
    again = mqtt("survivor-again", version)
    again.subscribe("life/restart", 1)
    again.publish("life/restart", b"back", qos=1)
    assert again.get().payload == b"back"
