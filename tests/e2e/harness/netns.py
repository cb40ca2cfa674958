"""Cluster nodes in network namespaces, for partition tests.

Each node runs in a network namespace of its own and reaches the other
nodes over a bridge in one more namespace (the hub): node N is
10.250.K.N there, its cluster port bound to that address. The test reaches
each node over a separate link of its own (10.251.K.4N+2, the test's end
10.251.K.4N+1, the only addresses this adds to the machine's own
namespace), where the node's MQTT port and admin API listen. Setting a
node's port on the hub down (`cut`) partitions it from every other node
while the test still talks to it; `heal` sets it up again. No address
outside these namespaces is ever used.

K is taken from the process id, so that two test runs on one machine do
not share addresses; interface and namespace names carry it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.cluster import Cluster, Node


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(
            f"`ip {' '.join(args)}` failed: {done.stderr.strip()}; the partition tests make "
            "network namespaces, veth pairs and a bridge, which needs root with CAP_SYS_ADMIN "
            "and CAP_NET_ADMIN (in a container: --privileged, or --cap-add for both)")


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


class Network:
    """The namespaces, the hub's bridge and the links of `nodes` nodes."""

    def __init__(self, nodes: int):
        self.nodes = nodes
        self.k = os.getpid() % 250
        self.tag = f"tern{self.k}p"
        self.hub = f"{self.tag}-hub"

    def namespace(self, node_id: int) -> str:
        return f"{self.tag}-n{node_id}"

    def cluster_address(self, node_id: int) -> str:
        return f"10.250.{self.k}.{node_id}"

    def test_address(self, node_id: int) -> str:
        """Where the test reaches node `node_id` (its MQTT port and admin API)."""
        return f"10.251.{self.k}.{4 * node_id + 2}"

    def _test_link(self, node_id: int) -> str:
        return f"{self.tag}t{node_id}"

    def create(self) -> None:
        """Makes everything; raises RuntimeError, with ip's message, if it cannot."""
        self.destroy()
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for node_id in range(1, self.nodes + 1):
            namespace = self.namespace(node_id)
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            # The cluster link: eth0 in the node, hN on the hub's bridge.
            _ip("-n", self.hub, "link", "add", f"h{node_id}", "type", "veth",
                "peer", "name", "eth0", "netns", namespace)
            _ip("-n", self.hub, "link", "set", f"h{node_id}", "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{self.cluster_address(node_id)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            # The test's link: a /30 between this namespace and the node.
            outside = self._test_link(node_id)
            _ip("link", "add", outside, "type", "veth", "peer", "name", "test", "netns", namespace)
            base = 4 * node_id
            _ip("addr", "add", f"10.251.{self.k}.{base + 1}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", namespace, "addr", "add", f"10.251.{self.k}.{base + 2}/30", "dev", "test")
            _ip("-n", namespace, "link", "set", "test", "up")

    def cut(self, node_id: int) -> None:
        """Partitions node `node_id` from every other node."""
        _ip("-n", self.hub, "link", "set", f"h{node_id}", "down")

    def heal(self, node_id: int) -> None:
        _ip("-n", self.hub, "link", "set", f"h{node_id}", "up")

    def destroy(self) -> None:
        """Removes whatever of this network exists (the links go with their namespaces)."""
        for node_id in range(1, self.nodes + 1):
            subprocess.run(["ip", "link", "del", self._test_link(node_id)], capture_output=True)
        existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in existing.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name == self.hub or name.startswith(f"{self.tag}-n"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


class NetnsNode(Node):
    """A `Node` whose process runs in its network namespace: MQTT and the
    admin API on its test address, the cluster port on its bridge address."""

    def __init__(self, node_id: int, workdir: Path, network: Network, *, voters: int = 3,
                 extra: list[str] | None = None):
        super().__init__(node_id, workdir, voters=voters, extra=extra)
        self.network = network
        # Each node has the namespace to itself: fixed ports.
        self.host = network.test_address(node_id)
        self.port, self.cluster_port, self.admin_port = 1883, 7001, 8081

    @property
    def cluster_addr(self) -> str:
        return f"{self.network.cluster_address(self.node_id)}:{self.cluster_port}"

    def _command(self) -> list[str]:
        return ["ip", "netns", "exec", self.network.namespace(self.node_id), *super()._command()]


class NetnsCluster(Cluster):
    """A `Cluster` of `NetnsNode`s on `network`."""

    def __init__(self, workdir: Path, network: Network, **options):
        super().__init__(workdir, **options)
        self.network = network

    def new_node(self, node_id: int) -> Node:
        return NetnsNode(node_id, self.workdir, self.network, voters=self.voters,
                         extra=list(self.extra))
