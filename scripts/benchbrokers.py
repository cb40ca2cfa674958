"""What the benchmark scripts share about the brokers they start: a free
loopback port, waiting for a broker to listen, reading its memory, TLS
certificates, and rumqttd (where to find it, how to install it, its
configuration)."""

import os
import shutil
import socket
import subprocess
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


def make_certificates(directory):
    """A CA and an ECDSA P-256 server certificate it signed for localhost
    and 127.0.0.1, made with ``openssl`` in `directory`: the paths of the
    CA certificate, the server's key and the server's certificate (PEM).
    A client checks the server against the CA (``tern bench --cafile``)."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    request, extensions = os.path.join(directory, "cert.csr"), os.path.join(directory, "ext")
    quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *curve, "-keyout", ca_key, "-out", ca,
                    "-days", "2", "-subj", "/CN=bench CA"], **quiet)
    subprocess.run(["openssl", "req", *curve, "-keyout", key, "-out", request,
                    "-subj", "/CN=localhost"], **quiet)
    with open(extensions, "w") as file:
        file.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions],
                   **quiet)
    # Mosquitto started as root reads them after dropping to its own user.
    os.chmod(directory, 0o755)
    for path in (ca, key, cert):
        os.chmod(path, 0o644)
    return ca, key, cert


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
