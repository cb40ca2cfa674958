"""A cluster of real `tern serve` processes on loopback addresses.

Node N listens on 127.0.0.N (MQTT, cluster gRPC and admin API, each on a
free port), keeps its data in its own directory and logs to its own file.
Node 1 bootstraps the cluster; the others join through node 1. Each node
can be stopped, killed and started again on the same ports and data. A
`Node` has `host` and `port`, so the paho `Client` of harness.clients
connects to it as to a single broker.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.broker import Broker, free_port, tern_binary


class Node(Broker):
    """A cluster node: a `Broker` (start, stop, kill, log, signal) on
    127.0.0.N with a cluster and an admin port of its own."""

    def __init__(self, node_id: int, workdir: Path, *, voters: int = 3, extra: list[str] | None = None):
        self.host = f"127.0.0.{node_id}"
        super().__init__("tern", workdir / f"node{node_id}", extra_args=extra or [])
        self.node_id = node_id
        self.port = free_port(self.host)
        self.cluster_port = free_port(self.host)
        self.admin_port = free_port(self.host)
        self.voters = voters
        self.join: list[str] = []
        self.bootstrap = False

    @property
    def cluster_addr(self) -> str:
        return f"{self.host}:{self.cluster_port}"

    @property
    def admin_addr(self) -> str:
        return f"{self.host}:{self.admin_port}"

    def _command(self) -> list[str]:
        command = [
            tern_binary(), "serve",
            "--listen", f"{self.host}:{self.port}",
            "--data-dir", str(self.data_dir),
            "--node-id", str(self.node_id),
            "--cluster-listen", self.cluster_addr,
            "--admin-listen", self.admin_addr,
            "--voters", str(self.voters),
            "--sys-interval", "0",
            "--log", os.environ.get("E2E_TERN_LOG", "info,openraft=warn"),
        ]
        if self.bootstrap:
            command.append("--bootstrap")
        if self.join:
            command += ["--join", ",".join(self.join)]
        return command + self.extra_args

    def start(self, timeout: float = 20.0) -> None:
        """Starts the node and waits until MQTT and the admin API answer."""
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http("GET", "/healthz", raw=True)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {self.node_id}'s admin API did not answer:\n{self.log()}")
            time.sleep(0.05)

    def http(self, method: str, path: str, body: dict | None = None, *, raw: bool = False):
        """(status, parsed JSON or text) of one admin API call."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://{self.admin_addr}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise OSError(str(error)) from error
        if raw:
            return status, text
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def status(self) -> dict:
        status, answer = self.http("GET", "/cluster/status")
        assert status == 200, f"status of node {self.node_id}: {status} {answer}"
        return answer

    def ready(self) -> bool:
        try:
            return self.http("GET", "/readyz", raw=True)[0] == 200
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> int:
        return super().stop(timeout)


class Cluster:
    """Nodes 1..n: node 1 bootstraps, the others join through it. `extra`
    arguments go to every node's `tern serve` (a password file, an ACL)."""

    def __init__(self, workdir: Path, *, voters: int = 3, extra: list[str] | None = None):
        self.workdir = workdir
        self.voters = voters
        self.extra = list(extra or [])
        self.nodes: dict[int, Node] = {}

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def new_node(self, node_id: int) -> Node:
        """The node `add` starts (a subclass places it elsewhere)."""
        return Node(node_id, self.workdir, voters=self.voters, extra=list(self.extra))

    def add(self, node_id: int) -> Node:
        node = self.new_node(node_id)
        if not self.nodes:
            node.bootstrap = True
        else:
            node.join = [self.nodes[min(self.nodes)].cluster_addr]
        self.nodes[node_id] = node
        node.start()
        return node

    def start(self, count: int, timeout: float = 30.0) -> "Cluster":
        for node_id in range(1, count + 1):
            self.add(node_id)
            if node_id == 1:
                self.wait_ready([1], timeout)
        self.wait_members(list(range(1, count + 1)), timeout)
        self.wait_ready(list(self.nodes), timeout)
        return self

    def wait_ready(self, node_ids: list[int], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.nodes[n].ready() for n in node_ids):
            if time.monotonic() > deadline:
                raise AssertionError(f"nodes {node_ids} not ready within {timeout} s:\n{self.logs()}")
            time.sleep(0.1)

    def wait_members(self, node_ids: list[int], timeout: float = 30.0) -> dict:
        """Until the first node's membership holds exactly `node_ids`."""
        deadline = time.monotonic() + timeout
        first = self.nodes[min(self.nodes)]
        while True:
            try:
                local = first.status()["local"]
                members = sorted(int(n) for n in [*local["voters"], *local["learners"]])
                if members == sorted(node_ids):
                    return local
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"membership did not become {node_ids} within {timeout} s:\n{self.logs()}")
            time.sleep(0.1)

    def wait_converged(self, timeout: float = 10.0, node_ids: list[int] | None = None) -> None:
        """Until every running node (of `node_ids`, if given) has applied the
        leader's last entry."""
        deadline = time.monotonic() + timeout
        nodes = [self.nodes[n] for n in node_ids] if node_ids else list(self.nodes.values())
        while True:
            try:
                applied = [n.status()["local"]["last_applied"] for n in nodes if n.running]
                logs = [n.status()["local"]["last_log_index"] for n in nodes if n.running]
                if len(set(applied)) == 1 and applied[0] >= max(logs):
                    return
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nodes did not converge within {timeout} s")
            time.sleep(0.05)

    def leader(self) -> int | None:
        for node in self.nodes.values():
            if node.running:
                try:
                    return node.status()["local"]["leader"]
                except (OSError, AssertionError):
                    continue
        return None

    def logs(self) -> str:
        return "\n".join(f"=== node {n.node_id} ===\n{n.log()[-6000:]}" for n in self.nodes.values())

    def cleanup(self) -> None:
        for node in self.nodes.values():
            if node.process is not None:
                node.kill()


@contextmanager
def running(cluster: Cluster, count: int = 3) -> Iterator[Cluster]:
    """`cluster` with nodes 1..`count` started: every node's log is printed
    if anything fails while it runs, and its processes are gone afterwards."""
    try:
        cluster.start(count)
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.cleanup()
