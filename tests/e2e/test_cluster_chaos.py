"""A node killed (SIGKILL) and restarted while QoS 1 messages flow through
a real three-node cluster: no message the publisher was acknowledged is
lost, for a subscriber on a node that stays up and for an offline one
whose persistent session, with the messages queued for it, is on the disk
of the node that dies.

The promise under test (docs/cluster.md, "What each operation promises"):
a PUBACK means every node with a matching subscriber has queued the
message as durably as its store promises, and a node that cannot confirm
makes the publisher's answer an error (MQTT 5: 0x80), so the publisher
knows to publish again. Messages refused that way may or may not arrive;
duplicates are allowed at QoS 1. Bounded: 600 messages, one at a time.
"""

from __future__ import annotations

import pytest

from harness import raw
from harness.broker import broker_kind
from harness.cluster import Cluster, running
from harness.clients import V5, Client

pytestmark = [
    pytest.mark.skipif(broker_kind() != "tern", reason="clustering is Tern's"),
    pytest.mark.time_limit(120),
]

MESSAGES = 600
KILL_AT, RESTART_AT = 200, 400


@pytest.fixture
def cluster(tmp_path):
    with running(Cluster(tmp_path)) as cluster:
        yield cluster


def persistent(node, client_id: str) -> Client:
    client = Client(node, client_id, V5, clean=False, session_expiry=600)
    client.connect()
    return client


def sequence_numbers(messages) -> set[int]:
    return {int(message.payload) for message in messages}


def receive_through(client: Client, last: int) -> list:
    """Messages until the one numbered `last` (one publisher's messages
    arrive in order), and any duplicates right behind it."""
    received = []
    while True:
        message = client.get(timeout=15)
        received.append(message)
        if int(message.payload) == last:
            return received + client.collect(0.3)


def test_no_acknowledged_message_is_lost_when_a_node_is_killed_and_restarted(cluster):
    survivor = persistent(cluster[2], "chaos-survivor")
    assert survivor.subscribe("chaos/#", 1) == 1
    # Offline from here on: what node 3 acknowledges for it waits on its disk.
    victim = persistent(cluster[3], "chaos-victim")
    assert victim.subscribe("chaos/#", 1) == 1
    victim.disconnect()
    victim.close()
    cluster.wait_converged()

    node = cluster[1]
    publisher = raw.RawClient(node.host, node.port, version=5)
    assert publisher.connect("chaos-pub").reason == 0
    acknowledged, refused = [], []
    for seq in range(1, MESSAGES + 1):
        if seq == KILL_AT:
            cluster[3].kill()
        if seq == RESTART_AT:
            cluster[3].start()
        packet_id = seq
        publisher.send(raw.publish("chaos/stream", str(seq).encode(), version=5, qos=1,
                                   packet_id=packet_id))
        answer = publisher.expect(raw.PUBACK, timeout=15)
        assert int.from_bytes(answer.body[:2], "big") == packet_id, answer
        (acknowledged if answer.reason == 0 else refused).append(seq)
    publisher.close()
    print(f"{len(acknowledged)} acknowledged, {len(refused)} refused "
          f"(from {min(refused, default=0)} to {max(refused, default=0)})")
    # The node was down for a while: some messages must have been refused,
    # and once it was back the publisher must have been acknowledged again.
    assert refused, "nothing was refused while a subscriber's node was down"
    assert acknowledged[-1] == MESSAGES, f"still refused at the end: {refused[-10:]}"
    assert refused[0] >= KILL_AT, f"refused before the kill: {refused[:10]}"

    # The survivor's node never went down: every acknowledged message.
    received = sequence_numbers(receive_through(survivor, acknowledged[-1]))
    missing = sorted(set(acknowledged) - received)
    assert not missing, f"the survivor misses {len(missing)} acknowledged messages: {missing[:20]}"

    # The victim's session, and what was queued for it, lived on the
    # killed node's disk.
    cluster.wait_ready([3])
    again = Client(cluster[3], "chaos-victim", V5, clean=False, session_expiry=600)
    assert again.connect().session_present
    received = sequence_numbers(receive_through(again, acknowledged[-1]))
    again.close()
    missing = sorted(set(acknowledged) - received)
    assert not missing, f"the victim misses {len(missing)} acknowledged messages: {missing[:20]}"
