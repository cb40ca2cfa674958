"""Authentication and the ACL in a cluster of three real `tern serve`
processes (127.0.0.1-3), every node given the same password file (written
by `tern passwd`) and ACL file: credentials are checked on every node, the
ACL decides publishes wherever the publisher and the subscribers are
connected, and a SIGHUP reload of the ACL on every node applies to the
clients already connected. Tern only: Mosquitto has no cluster.

alice may write and read `sensors/#`; bob may only read it, until the
reload grants him write.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from harness import raw as wire
from harness.broker import broker_kind, tern_binary
from harness.cluster import Cluster, running
from harness.clients import V5, V311, client_maker

pytestmark = [
    pytest.mark.skipif(broker_kind() != "tern", reason="clustering is Tern's"),
    pytest.mark.time_limit(90),
]

ACL = """\
user alice
topic readwrite sensors/#

user bob
topic read sensors/#
"""

RELOADED = "password and ACL files reloaded"


def tern_passwd(path, user: str, password: str, *, create: bool = False) -> None:
    command = [tern_binary(), "passwd", *(["-c"] if create else []), "--stdin", str(path), user]
    subprocess.run(command, input=password + "\n", text=True, check=True,
                   capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """(cluster, ACL path): three nodes sharing one password file and one ACL."""
    workdir = tmp_path_factory.mktemp("secured-cluster")
    passwords = workdir / "passwd"
    tern_passwd(passwords, "alice", "alice-pw", create=True)
    tern_passwd(passwords, "bob", "bob-pw")
    acl = workdir / "acl"
    acl.write_text(ACL)
    cluster = Cluster(workdir, extra=["--password-file", str(passwords), "--acl-file", str(acl)])
    with running(cluster):
        yield cluster, acl


@pytest.fixture
def clients(secured):
    """clients(node, client_id, user, password, version=V5, **options) -> a connected Client."""
    cluster, _ = secured
    with client_maker(lambda node: cluster[node]) as make:
        yield lambda node, client_id, user, password, version=V5, **options: make(
            node, client_id, version, username=user, password=password, **options)


def publish_qos1(client: wire.RawClient, topic: str, packet_id: int) -> int:
    """PUBACK reason of a QoS 1 publish over the raw client."""
    client.send(wire.publish(topic, b"from bob", version=client.version, qos=1,
                             packet_id=packet_id))
    return client.expect(wire.PUBACK).reason


@pytest.mark.parametrize("version,bad", [(V311, 4), (V5, 0x86)])
def test_credentials_are_checked_on_every_node(secured, version, bad):
    cluster, _ = secured
    cases = [("alice", b"alice-pw", 0), ("alice", b"wrong", bad), ("mallory", b"bob-pw", bad),
             ("bob", b"alice-pw", bad)]
    for node in cluster.nodes.values():
        for user, password, expected in cases:
            client = wire.RawClient(node.host, node.port, version=version)
            try:
                connack = client.connect(f"login-{node.node_id}", username=user, password=password)
                assert connack.reason == expected, (node.node_id, user, password, connack)
            finally:
                client.close()


def test_the_acl_decides_publishes_across_nodes_and_reloads_on_every_node(secured, clients):
    cluster, acl = secured
    bob_sub = clients(1, "bob-sub", "bob", "bob-pw")
    assert bob_sub.subscribe("sensors/#", 1) == 1
    alice_sub = clients(2, "alice-sub", "alice", "alice-pw")
    assert alice_sub.subscribe("sensors/#", 1) == 1
    cluster.wait_converged()

    # alice on node 2 reaches bob on node 1.
    alice = clients(2, "alice-pub", "alice", "alice-pw")
    alice.publish("sensors/temp", b"21.5", qos=1)
    message = bob_sub.get()
    assert (message.topic, message.payload) == ("sensors/temp", b"21.5")
    assert alice_sub.get().payload == b"21.5"

    # bob on node 3 may not write: told with PUBACK 0x87, routed nowhere.
    bob = wire.RawClient(cluster[3].host, cluster[3].port, version=V5)
    try:
        assert bob.connect("bob-pub", username="bob", password=b"bob-pw").reason == 0
        assert publish_qos1(bob, "sensors/bob", 1) == 0x87
        alice.publish("sensors/after-denial", b"marker", qos=1)
        for subscriber in (bob_sub, alice_sub):
            assert [m.topic for m in subscriber.until("sensors/after-denial")] == [
                "sensors/after-denial"]
            subscriber.assert_no_message(0.3)

        # The ACL grants bob write; every node reloads it on SIGHUP.
        acl.write_text(ACL.replace("topic read sensors/#", "topic readwrite sensors/#"))
        reloads = {n.node_id: n.log().count(RELOADED) for n in cluster.nodes.values()}
        for node in cluster.nodes.values():
            node.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        for node in cluster.nodes.values():
            while node.log().count(RELOADED) <= reloads[node.node_id]:
                assert time.monotonic() < deadline, (
                    f"node {node.node_id} did not reload:\n{node.log()[-3000:]}")
                time.sleep(0.05)

        # bob's connection follows the new rules at its next packet.
        assert publish_qos1(bob, "sensors/bob", 2) == 0
        for subscriber in (bob_sub, alice_sub):
            message = subscriber.get()
            assert (message.topic, message.payload) == ("sensors/bob", b"from bob")
    finally:
        bob.close()
