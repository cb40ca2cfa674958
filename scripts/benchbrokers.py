"""What the benchmark scripts share about the brokers they start: a free
loopback port, waiting for a broker to listen, reading its memory, and
rumqttd (where to find it, how to install it, its configuration)."""

import os
import shutil
import socket
import sys
import time

RUMQTTD_INSTALL = "cargo install rumqttd --version 0.20.0 --root /work/tools/rumqttd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process, name, timeout=15.0):
    """Returns once `process` (called `name` in errors) accepts connections
    on 127.0.0.1:`port`; exits the script if it stops or times out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited at start-up with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not listen on port {port} within {timeout:.0f} s")


def memory(pid):
    """VmRSS, its peak so far (VmHWM), its anonymous and file-backed parts
    (RssAnon: heap and stacks; RssFile: pages of the binary and libraries
    read in, code that first runs when connections come among them), Pss
    and Private_Dirty of `pid`, in kB."""
    fields = {"VmRSS:": "rss", "VmHWM:": "peak", "RssAnon:": "rss_anon", "RssFile:": "rss_file"}
    figures = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key = fields.get(line.split(maxsplit=1)[0])
            if key:
                figures[key] = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key = line.split(":")[0]
            if key in ("Pss", "Private_Dirty"):
                figures[key.lower()] = int(line.split()[1])
    return figures


def rumqttd_config(port, max_connections=20_000, protocol="311"):
    """rumqttd 0.20's TOML configuration: one listener, nothing else.

    The listener speaks MQTT 3.1.1 (``[v4.1]``), or MQTT 5 (``[v5.1]``) with
    ``protocol="5"``: rumqttd has one listener per protocol version.
    The ``[router]`` and listener tables and all their keys are required
    (rumqttd's ``Config`` has no defaults for them). Leaving out
    ``[ws]``, ``[console]``, ``[prometheus]``, ``[metrics]``, ``[bridge]``
    and ``[cluster]`` turns them off.
    """
    listener = "v5" if protocol == "5" else "v4"
    return f"""id = 0

[router]
# Refuses connections beyond this (Mosquitto and Tern: unlimited by default).
max_connections = {max_connections}
# QoS 0 messages read from a topic's log per scheduling round (the value
# of rumqttd's demo configuration).
max_outgoing_packet_count = 200
# Each subscription filter keeps an in-memory log of up to 10 x 10 MiB
# segments; a subscriber that falls further behind loses messages. The
# demo's 100 MiB segments would let a run grow to gigabytes.
max_segment_size = 10485760
max_segment_count = 10

[{listener}.1]
name = "{listener}-1"
listen = "127.0.0.1:{port}"
# rumqttd sleeps this long after accepting each connection (1 ms in its
# demo config); the others do not wait. Even 0 is a tokio sleep, which
# ends at the timer's next 1 ms tick: rumqttd 0.20 accepts about 900
# connections/s here whatever this says (scripts/bench-idle-memory).
next_connection_delay_ms = 0

[{listener}.1.connections]
# Time allowed for CONNECT after accept (a u16: at most 65,535 ms).
connection_timeout_ms = 60000
# Largest packet accepted: 1 MiB, far above the bench's payloads.
max_payload_size = 1048576
# Packets read from a socket before handing them to the router (not an
# in-flight window: that is fixed at 100 in rumqttd's source).
max_inflight_count = 100
# Publishing to a topic nobody subscribes to is allowed, as elsewhere.
dynamic_filters = true
"""


def find_rumqttd(path):
    """The rumqttd binary to use, or None (with a note on stderr)."""
    if path:
        if not os.access(path, os.X_OK):
            sys.exit(f"--rumqttd {path}: no such executable")
        return path
    found = shutil.which("rumqttd")
    if not found:
        print(f"rumqttd not found (--rumqttd PATH or on PATH): running Tern and Mosquitto "
              f"only. Install it with: {RUMQTTD_INSTALL}", file=sys.stderr)
    return found
