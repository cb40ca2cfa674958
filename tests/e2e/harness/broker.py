"""The broker under test, as a child process in its own process group.

E2E_BROKER chooses the implementation: `mosquitto` (the reference, default for
now) or `tern`. Each test gets a fresh broker on a free 127.0.0.1 port with its
own data directory; its output goes to a log file that the suite prints when a
test fails.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

# Mosquitto refuses packets larger than this (its `max_packet_size`), so the
# robustness tests have a limit to exceed. MQTT 5 clients learn it from CONNACK.
MOSQUITTO_MAX_PACKET_SIZE = 65536


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def broker_kind() -> str:
    kind = os.environ.get("E2E_BROKER", "mosquitto")
    if kind not in ("mosquitto", "tern"):
        raise RuntimeError(f"E2E_BROKER must be mosquitto or tern, not {kind!r}")
    return kind


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BrokerExited(RuntimeError):
    """The broker process ended while starting."""


class Broker:
    """A broker process. `host` and `port` are where clients connect; the
    port and data directory stay the same across `restart()`."""

    host = "127.0.0.1"

    def __init__(self, kind: str, workdir: Path, *, extra_args: list[str] = (),
                 config: str | None = None):
        """`extra_args` go after the suite's own arguments; `config` is the
        text of a TOML file passed with `--config` (Tern only)."""
        self.kind = kind
        self.extra_args = list(extra_args)
        self.config = config
        self.port = free_port()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.process: subprocess.Popen | None = None

    # -- the command line ------------------------------------------------
    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            return [mosquitto_binary(), "-c", str(self._mosquitto_config())]
        extra = shlex.split(os.environ.get("TERN_ARGS", ""))
        binary = tern_binary()
        if self.config is not None:
            config_path = self.workdir / "tern.toml"
            config_path.write_text(self.config)
            extra += ["--config", str(config_path)]
        return [binary, "serve", "--listen", f"{self.host}:{self.port}",
                "--data-dir", str(self.data_dir), *extra, *self.extra_args]

    def _mosquitto_config(self) -> Path:
        path = self.workdir / "mosquitto.conf"
        path.write_text(
            "\n".join([
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                # Mosquitto writes its database when it stops on SIGTERM, so a
                # graceful restart keeps sessions and retained messages.
                "persistence true",
                f"persistence_location {self.data_dir}/",
                "persistence_file mosquitto.db",
                "max_keepalive 65535",
                "sys_interval 1",
                f"max_packet_size {MOSQUITTO_MAX_PACKET_SIZE}",
                # Only has an effect when run as root, where mosquitto would
                # otherwise switch to a user who cannot write the data dir.
                f"user {getpass.getuser()}",
                "log_dest stderr",
                "log_type all",
                "log_timestamp_format %H:%M:%S",
                "connection_messages true",
                "",
            ])
        )
        return path

    # -- lifecycle -------------------------------------------------------
    def start_fresh(self, attempts: int = 3) -> None:
        """The first start. If the broker exits because another process took
        the free port in the meantime, tries again on a new port."""
        for attempt in range(attempts):
            try:
                return self.start()
            except BrokerExited:
                if attempt == attempts - 1 or not _port_taken(self.host, self.port):
                    raise
                self.port = free_port()

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None, "broker already running"
        log = open(self.log_path, "ab")
        log.write(f"--- starting {self._command()}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise BrokerExited(f"broker exited with {code} while starting:\n{self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker did not listen within {timeout} s:\n{self.log()}")
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        """Graceful stop: SIGTERM, then wait. Returns the exit code; a broker
        still running at the timeout is killed and the stop counts as failed."""
        assert self.process is not None, "broker not running"
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise AssertionError(f"broker ignored SIGTERM for {timeout} s") from None
        self._reap_group()
        self.process = None
        return code

    def signal(self, signum: int) -> None:
        """Sends `signum` (SIGHUP, say) to the broker process."""
        assert self.process is not None, "broker not running"
        self.process.send_signal(signum)

    def wait_for_log(self, text: str, timeout: float = 5.0, *, after: int = 0) -> str:
        """Waits until the log, from character `after` on, contains `text`;
        returns the matching line."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()[after:]
            for line in log.splitlines():
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker log has no {text!r} within {timeout} s:\n{log}")
            time.sleep(0.05)

    def reload(self) -> None:
        """SIGHUP: Tern reloads its password and ACL files."""
        assert self.process is not None, "broker not running"
        self.process.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash would; `start()` brings it back on the same data."""
        assert self.process is not None, "broker not running"
        self._kill_group()
        self.process = None

    def cleanup(self) -> None:
        if self.process is not None:
            self._kill_group()
            self.process = None

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def _reap_group(self) -> None:
        """Kills anything the broker left behind in its process group."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def mosquitto_binary() -> str:
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("mosquitto") or "mosquitto"


def tern_binary() -> str:
    return os.environ.get("TERN_BIN", str(REPO_ROOT / "target/debug/tern"))


def missing_tools() -> list[str]:
    """What the suite needs and cannot find, as messages for the user."""
    problems = []
    binary = mosquitto_binary() if broker_kind() == "mosquitto" else tern_binary()
    if not (os.access(binary, os.X_OK) or shutil.which(binary)):
        hint = ("apt-get install mosquitto" if broker_kind() == "mosquitto"
                else "build it with `cargo build -p tern` or set TERN_BIN")
        problems.append(f"broker binary {binary!r} not found: {hint}")
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found: apt-get install mosquitto-clients")
    if not shutil.which("openssl"):
        problems.append("openssl not found (it makes the test certificates): apt-get install openssl")
    return problems
