"""Debian's mosquitto_pub and mosquitto_sub as clients of the broker under test.

A subscriber runs in the background under `stdbuf -oL` with `-d`, so that its
"Subscribed" line tells when its subscription is in place, and with a `-F`
format that marks each message line. `-W` bounds its life in any case.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from .clients import V5, WAIT

_MARK = "MSG"


def _version_flag(version: int) -> list[str]:
    return ["-V", "mqttv5" if version == V5 else "mqttv311"]


def pub(broker, topic: str, message: str, *, qos: int = 0, retain: bool = False,
        version: int = V5, client_id: str = "cli-pub", extra: list[str] = (),
        timeout: float = WAIT) -> None:
    """Runs mosquitto_pub once and checks that it succeeded."""
    command = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-i", client_id,
               "-t", topic, "-m", message, "-q", str(qos), *_version_flag(version), *extra]
    if retain:
        command.append("-r")
    result = subprocess.run(command, capture_output=True, timeout=timeout, text=True)
    assert result.returncode == 0, f"{command} failed: {result.stdout}{result.stderr}"


@dataclass
class CliMessage:
    qos: int
    retain: bool
    topic: str
    payload: str


class Sub:
    """A running mosquitto_sub. Payloads must be single-line text."""

    def __init__(self, broker, topics: list[str], *, qos: int = 0, version: int = V5,
                 client_id: str = "cli-sub", lifetime: int = 20, extra: list[str] = ()):
        stdbuf = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        command = [*stdbuf, "mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
                   "-i", client_id, "-q", str(qos), *_version_flag(version), "-d",
                   "-W", str(lifetime), "-F", f"{_MARK} %q %r %t %p", *extra]
        for topic in topics:
            command += ["-t", topic]
        self.command = command
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.output: list[str] = []
        self.messages: queue.Queue[CliMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if line.startswith("Subscribed ("):
                self._subscribed.set()
            elif line.startswith(_MARK + " "):
                _, qos, retain, topic, payload = (line.split(" ", 4) + [""])[:5]
                self.messages.put(CliMessage(int(qos), retain == "1", topic, payload))

    def wait_subscribed(self, timeout: float = WAIT) -> "Sub":
        if not self._subscribed.wait(timeout):
            raise AssertionError(f"mosquitto_sub not subscribed within {timeout} s: {self.output}")
        return self

    def expect(self, count: int, timeout: float = WAIT) -> list[CliMessage]:
        deadline = time.monotonic() + timeout
        received = []
        while len(received) < count:
            try:
                received.append(self.messages.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                raise AssertionError(
                    f"mosquitto_sub got {len(received)} of {count} messages: {self.output}"
                ) from None
        return received

    def kill(self) -> None:
        """SIGKILL: the client vanishes without DISCONNECT."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(WAIT)

    def close(self) -> None:
        self.kill()
        self._reader.join(WAIT)
        if self.process.stdout:
            self.process.stdout.close()
