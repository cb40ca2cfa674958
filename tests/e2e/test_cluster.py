"""A cluster of three real `tern serve` processes (127.0.0.1-3), driven by
paho-mqtt clients: publish on one node, receive on another, at QoS 0, 1
and 2, with wildcards, shared subscriptions and retained messages; a
session taken over from one node to another with its queued messages; a
fourth node joining as a learner and serving clients; `tern cluster
status`. Tern only: Mosquitto has no cluster.

A subscription takes effect on the other nodes once they have applied its
route (the SUBACK follows its commit; the others apply it within a
heartbeat), so a test that publishes elsewhere right after subscribing
first waits for every node to have applied the log (`wait_converged`).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from harness.broker import Broker, broker_kind, free_port, tern_binary
from harness.cluster import Cluster, running
from harness.clients import V5, V311, client_maker

pytestmark = [
    pytest.mark.skipif(broker_kind() != "tern", reason="clustering is Tern's"),
    pytest.mark.time_limit(90),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running(Cluster(tmp_path_factory.mktemp("cluster"))) as cluster:
        yield cluster


@pytest.fixture
def clients(cluster):
    """clients(node, client_id, version=V5, connect=True, **options) -> a Client of that node."""
    with client_maker(lambda node: cluster[node]) as make:
        yield make


def test_a_single_node_answers_probes_and_says_it_is_not_a_cluster(tmp_path):
    """No cluster fixture: a standalone broker with the admin API."""
    admin = f"127.0.0.1:{free_port('127.0.0.1')}"
    broker = Broker("tern", tmp_path, extra_args=["--admin-listen", admin])
    broker.start_fresh()
    try:
        # The MQTT port is bound first; the admin API follows at start-up.
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://{admin}/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"no admin API on {admin}:\n{broker.log()}"
                time.sleep(0.05)
        for path, answer in (("/healthz", "ok"), ("/readyz", "ready")):
            with urllib.request.urlopen(f"http://{admin}{path}", timeout=5) as response:
                assert (response.status, response.read().decode().strip()) == (200, answer)
        done = subprocess.run([tern_binary(), "cluster", "status", "--admin", admin],
                              capture_output=True, text=True, timeout=15)
        assert done.returncode != 0
        assert "runs alone, not in a cluster" in done.stderr, done.stderr
        unreachable = subprocess.run(
            [tern_binary(), "cluster", "status", "--admin", f"127.0.0.1:{free_port('127.0.0.1')}"],
            capture_output=True, text=True, timeout=15)
        assert unreachable.returncode != 0
        assert "cannot reach the admin API" in unreachable.stderr, unreachable.stderr
    finally:
        broker.cleanup()


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_a_message_published_on_one_node_reaches_a_subscriber_on_another(cluster, clients, qos, version):
    topic = f"cross/{version}/{qos}"
    subscriber = clients(1, f"sub-{version}-{qos}", version)
    assert subscriber.subscribe(topic, 2) == 2
    cluster.wait_converged()
    publisher = clients(2, f"pub-{version}-{qos}", version)
    publisher.publish(topic, f"hello at {qos}", qos)
    message = subscriber.get()
    assert (message.topic, message.payload, message.qos) == (topic, f"hello at {qos}".encode(), qos)
    subscriber.assert_no_message(0.3)


def test_wildcards_match_across_nodes_and_each_client_gets_one_copy(cluster, clients):
    plus = clients(3, "wild-plus")
    plus.subscribe("site/+/temp", 1)
    plus.subscribe("site/#", 1)
    hash_only = clients(2, "wild-hash")
    hash_only.subscribe("site/#", 1)
    other = clients(2, "wild-other")
    other.subscribe("elsewhere/#", 1)
    cluster.wait_converged()
    publisher = clients(1, "wild-pub")
    publisher.publish("site/a/temp", "21.5", 1)
    assert plus.get().payload == b"21.5"
    assert hash_only.get().payload == b"21.5"
    plus.assert_no_message(0.3)
    other.assert_no_message(0.1)


def test_one_member_of_a_shared_group_gets_each_message_across_nodes(cluster, clients):
    members = [clients(node, f"worker-{node}") for node in (1, 2, 3)]
    for member in members:
        member.subscribe("$share/workers/jobs/#", 1)
    plain = clients(2, "jobs-observer")
    plain.subscribe("jobs/#", 1)
    cluster.wait_converged()
    publisher = clients(1, "jobs-pub")
    count = 30
    for index in range(count):
        publisher.publish(f"jobs/{index}", str(index), 1)
    assert sorted(int(m.payload) for m in plain.expect(count)) == list(range(count))
    received = []
    per_member = []
    time.sleep(0.5)
    for member in members:
        got = [int(m.payload) for m in member.collect(0.5)]
        per_member.append(len(got))
        received += got
    assert sorted(received) == list(range(count)), f"each job once, per member {per_member}"
    assert sum(1 for n in per_member if n > 0) >= 2, f"the group spans nodes: {per_member}"


def test_a_retained_message_acknowledged_on_node_1_is_seen_at_once_on_node_3(cluster, clients):
    publisher = clients(1, "retain-pub")
    for round_ in range(10):
        publisher.publish("config/device", f"v{round_}", 1, retain=True)
        # Right after the PUBACK: read-your-writes across nodes.
        reader = clients(3, f"retain-reader-{round_}")
        reader.subscribe("config/#", 1)
        message = reader.get()
        assert (message.payload, message.retain) == (f"v{round_}".encode(), True)
        reader.disconnect()
    publisher.publish("config/device", b"", 1, retain=True)
    late = clients(2, "retain-late")
    late.subscribe("config/#", 1)
    late.assert_no_message(0.5)


def test_messages_from_one_publisher_arrive_in_order_on_another_node(cluster, clients):
    subscriber = clients(1, "order-sub")
    subscriber.subscribe("order/#", 1)
    cluster.wait_converged()
    publisher = clients(2, "order-pub")
    count = 200
    for index in range(count):
        publisher.publish("order/t", str(index), 1, wait=False)
    received = [int(m.payload) for m in subscriber.expect(count, timeout=20)]
    assert received == list(range(count))


def test_a_persistent_session_moves_to_another_node_with_its_queued_messages(cluster, clients):
    mover = clients(1, "mover", clean=False, session_expiry=300)
    mover.subscribe("mv/#", 1)
    mover.disconnect()
    cluster.wait_converged()
    # Every node's replica of the registry knows the persistent session.
    for node in (1, 2, 3):
        assert cluster[node].http("GET", "/cluster/sessions")[1]["sessions"]["mover"] == 1
    publisher = clients(2, "mover-pub")
    for index in range(5):
        publisher.publish("mv/x", f"queued-{index}", 1)
    back = clients(3, "mover", clean=False, session_expiry=300, connect=False)
    connack = back.connect()
    assert connack.session_present
    payloads = [m.payload.decode() for m in back.expect(5)]
    assert payloads == [f"queued-{i}" for i in range(5)]
    # The subscription moved too: new messages reach the new node.
    cluster.wait_converged()
    publisher.publish("mv/y", "after-move", 1)
    assert back.get().payload == b"after-move"
    back.assert_no_message(0.3)
    cluster.wait_converged()
    assert cluster[2].http("GET", "/cluster/sessions")[1]["sessions"]["mover"] == 3


def test_a_connected_client_is_taken_over_by_a_connection_to_another_node(cluster, clients):
    first = clients(2, "roamer", clean=False, session_expiry=300)
    first.subscribe("roam/#", 1)
    second = clients(3, "roamer", clean=False, session_expiry=300, connect=False)
    assert second.connect().session_present
    assert first.wait_disconnected() == 0x8E, "session taken over"
    cluster.wait_converged()
    clients(1, "roam-pub").publish("roam/a", "to the new node", 1)
    assert second.get().payload == b"to the new node"


def test_cluster_status_shows_leader_term_members_and_applied_index(cluster):
    cluster.wait_converged()
    output = subprocess.run(
        [tern_binary(), "cluster", "status", "--admin", cluster[2].admin_addr],
        capture_output=True, text=True, timeout=15, check=True).stdout
    lines = output.splitlines()
    leader = cluster.leader()
    assert f"leader: {leader}" in lines[0] and "term:" in lines[0], output
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert sorted(rows) == ["1", "2", "3"], output
    applied = {row[3] for row in rows.values()}
    assert len(applied) == 1 and int(applied.pop()) > 0, output
    assert rows[str(leader)][1] == "leader", output
    status = json.loads(subprocess.run(
        [tern_binary(), "cluster", "status", "--json", "--admin", cluster[1].admin_addr],
        capture_output=True, text=True, timeout=15, check=True).stdout)
    assert [m["id"] for m in status["members"]] == [1, 2, 3]
    assert all(m["voter"] for m in status["members"])


def test_a_fourth_node_joins_as_a_learner_and_serves_clients(cluster, clients):
    """Last in the module: it changes the membership."""
    publisher = clients(1, "learner-pub")
    publisher.publish("fleet/config", "before-join", 1, retain=True)
    cluster.add(4)
    local = cluster.wait_members([1, 2, 3, 4])
    assert "4" in {str(n) for n in local["learners"]}, local
    assert sorted(int(n) for n in local["voters"]) == [1, 2, 3], local
    cluster.wait_ready([4])
    subscriber = clients(4, "learner-sub")
    subscriber.subscribe("fleet/#", 1)
    retained = subscriber.get()
    assert (retained.payload, retained.retain) == (b"before-join", True)
    cluster.wait_converged()
    publisher.publish("fleet/cmd", "after-join", 1)
    assert subscriber.get().payload == b"after-join"
    # And the other way: published on the learner, received on a voter.
    listener = clients(2, "learner-listener")
    listener.subscribe("from-learner/#", 1)
    cluster.wait_converged()
    clients(4, "learner-pub-2").publish("from-learner/x", "hi", 1)
    assert listener.get().payload == b"hi"


def test_leadership_moves_on_request(cluster):
    """After the learner test: voters 1-3, learner 4."""
    leader = cluster.leader()
    target = next(n for n in (1, 2, 3) if n != leader)
    done = subprocess.run(
        [tern_binary(), "cluster", "transfer-leader", str(target), "--admin", cluster[1].admin_addr],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 15
    while cluster.leader() != target:
        assert time.monotonic() < deadline, f"leader is still {cluster.leader()}, not {target}"
        time.sleep(0.1)


def test_a_node_leaves_and_the_others_keep_serving(cluster, clients):
    done = subprocess.run(
        [tern_binary(), "cluster", "leave", "4", "--admin", cluster[2].admin_addr],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    cluster.wait_members([1, 2, 3])
    cluster[4].stop()
    subscriber = clients(3, "after-leave-sub")
    subscriber.subscribe("after-leave/#", 1)
    cluster.wait_converged()
    clients(1, "after-leave-pub").publish("after-leave/x", "still here", 1)
    assert subscriber.get().payload == b"still here"


def test_losing_the_quorum_degrades_and_the_cluster_recovers(cluster, clients):
    """Last: kills two of the three voters, then brings them back."""
    survivor = cluster[1]
    subscriber = clients(1, "quorum-sub")
    subscriber.subscribe("quorum/#", 1)
    publisher = clients(1, "quorum-pub")
    cluster.wait_converged()
    cluster[2].kill()
    cluster[3].kill()
    deadline = time.monotonic() + 15
    while survivor.ready():
        assert time.monotonic() < deadline, "a node without quorum still reports ready"
        time.sleep(0.1)
    status, _ = survivor.http("GET", "/readyz", raw=True)
    assert status == 503
    assert survivor.running, "the node stays up without a quorum"
    # What needs no write still works: connected clients' local traffic,
    # and new clients connect (served by this node alone) without waiting.
    publisher.publish("quorum/local", "without quorum", 1)
    assert subscriber.get().payload == b"without quorum"
    started = time.monotonic()
    late = clients(1, "quorum-late")
    assert late.subscribe("quorum/late", 1) == 1
    assert time.monotonic() - started < 3, "no quorum must not make clients wait"
    cluster[2].start()
    cluster[3].start()
    cluster.wait_ready([1, 2, 3], timeout=30)
    cluster.wait_converged(timeout=15)
    clients(3, "quorum-pub-3").publish("quorum/remote", "after recovery", 1)
    assert subscriber.get(timeout=10).payload == b"after recovery"
