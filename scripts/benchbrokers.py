"""What scripts/bench-compare and scripts/bench-idle-memory share about the
brokers they start: a free loopback port, and rumqttd (where to find it,
how to install it, its configuration)."""

import os
import shutil
import socket
import sys

RUMQTTD_INSTALL = "cargo install rumqttd --version 0.20.0 --root /work/tools/rumqttd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
