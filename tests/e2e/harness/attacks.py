"""Misbehaving connections for the soak test (test_soak_robustness.py).

Each attack is one TCP connection, bounded in time, that sends what no
well-behaved client sends: random bytes, random, truncated and bit-flipped
copies of valid MQTT 3.1.1 and 5.0 packets, remaining lengths announcing
256 MB, fixed headers one byte a second, half packets before vanishing,
SUBSCRIBE packets with hundreds of filters, takeovers among a few shared
client ids, or a subscription to '#' whose
socket is never read. It records in a thread-safe `Tally` what it sent and
how the connection ended.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter, defaultdict

from . import raw as wire

# How an attacker's connection ended.
CLOSED = "closed by broker"  # end of stream while we read
RESET = "reset"  # ECONNRESET or EPIPE: the broker closed while we sent
STALLED = "send timed out"  # the broker stopped reading what we sent
OPEN = "open at our timeout"  # still open when we stopped waiting: we closed it
LEFT = "we hung up"  # vanished on purpose (mid-packet, with or without RST)
REFUSED = "refused"  # the TCP connect itself failed
ENDINGS = (CLOSED, RESET, STALLED, OPEN, LEFT, REFUSED)

# The largest remaining length MQTT can express (0xFF 0xFF 0xFF 0x7F): 256 MB.
HUGE_LENGTH = b"\xff\xff\xff\x7f"
JUNK_TOPIC = "soak/junk"


class Tally:
    """Connections, bytes sent and endings, by attack kind."""

    def __init__(self):
        self._lock = threading.Lock()
        self.connections: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.endings: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.held_open: defaultdict[str, float] = defaultdict(float)  # longest life, s

    def record(self, attack: "Attack") -> None:
        with self._lock:
            self.connections[attack.kind] += 1
            self.bytes_sent[attack.kind] += attack.sent
            self.endings[attack.kind][attack.ending or OPEN] += 1
            life = time.monotonic() - attack.started
            self.held_open[attack.kind] = max(self.held_open[attack.kind], life)

    def total(self) -> int:
        with self._lock:
            return sum(self.connections.values())

    def table(self) -> str:
        with self._lock:
            head = ["attack", "conns", "bytes sent", *ENDINGS, "longest s"]
            rows = [[kind, self.connections[kind], self.bytes_sent[kind],
                     *(self.endings[kind][e] for e in ENDINGS),
                     f"{self.held_open[kind]:.1f}"] for kind in sorted(self.connections)]
            rows.append(["total", sum(self.connections.values()), sum(self.bytes_sent.values()),
                         *(sum(c[e] for c in self.endings.values()) for e in ENDINGS), ""])
        return format_table(head, rows)


def format_table(head: list[str], rows: list[list[object]]) -> str:
    cells = [head, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


class Attack:
    """One attacker connection. Every socket operation is bounded by
    `timeout`; `ending` says how the connection ended."""

    def __init__(self, host: str, port: int, kind: str, *, timeout: float = 3.0,
                 rcvbuf: int | None = None):
        self.kind = kind
        self.address = (host, port)
        self.sent = 0
        self.ending: str | None = None
        self.started = time.monotonic()
        self.sock: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        except OSError:
            sock.close()
            self.ending = REFUSED

    @property
    def alive(self) -> bool:
        return self.ending is None

    def send(self, data: bytes) -> bool:
        """Sends all of `data`; False once the connection has ended."""
        if not self.alive:
            return False
        try:
            self.sock.sendall(data)
            self.sent += len(data)
            return True
        except socket.timeout:
            self.ending = STALLED
        except (BrokenPipeError, ConnectionResetError):
            self.ending = RESET
        return False

    def receive(self, wait: float) -> bytes | None:
        """What arrives within `wait` s (b"" if nothing); None once the
        broker has closed or reset the connection."""
        if not self.alive:
            return None
        self.sock.settimeout(max(wait, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return b""
        except (ConnectionResetError, BrokenPipeError):
            self.ending = RESET
            return None
        if not data:
            self.ending = CLOSED
            return None
        return data

    def await_connack(self, wait: float = 3.0) -> bool:
        data = self.receive(wait)
        return bool(data) and data[0] == 0x20

    def until_closed(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Reads and discards until the broker ends the connection, for at
        most `seconds` (or until `stop`); then it is ours to close."""
        deadline = time.monotonic() + seconds
        while self.alive and (left := deadline - time.monotonic()) > 0:
            if stop is not None and stop.is_set():
                break
            self.receive(min(left, 0.5))
        if self.alive:
            self.ending = OPEN

    def hang_up(self, *, reset: bool = False) -> None:
        """Leaves on purpose; with `reset`, with an RST instead of a FIN."""
        if self.alive:
            self.ending = LEFT
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# -- valid packets to start from ----------------------------------------

def unsubscribe(packet_id: int, topics: list[str], *, version: int) -> bytes:
    body = struct.pack("!H", packet_id) + (wire.properties(None) if version == 5 else b"")
    return wire.packet(wire.UNSUBSCRIBE, 0x02, body + b"".join(wire.utf8(t) for t in topics))


def valid_connect(rng: random.Random, version: int, client_id: str) -> bytes:
    will = None
    if rng.random() < 0.3:
        will = wire.Will(f"{JUNK_TOPIC}/will", b"w", qos=rng.randint(0, 1))
    props = {wire.SESSION_EXPIRY_INTERVAL: 0, wire.RECEIVE_MAXIMUM: 10} if version == 5 else None
    return wire.connect(client_id, version=version, keepalive=rng.choice([0, 5, 60]),
                        will=will, props=props)


def v5_extras(rng: random.Random, topic: str) -> list[bytes]:
    """MQTT 5 packets with the state-bearing properties: topic aliases,
    subscription identifiers, AUTH."""
    alias = {wire.TOPIC_ALIAS: rng.randint(1, 3)}
    identifier = wire.properties({0x0B: rng.randint(1, 2 ** 28 - 1)})
    subscribe = (struct.pack("!H", rng.randint(1, 65535)) + identifier
                 + wire.utf8(f"{JUNK_TOPIC}/#") + bytes([rng.randrange(64)]))
    return [
        wire.publish(topic, b"aliased", version=5, props=alias),
        wire.publish("", b"by alias", version=5, props=alias),
        wire.packet(wire.SUBSCRIBE, 0x02, subscribe),
        wire.packet(15, 0, b"\x18" + wire.properties({0x15: "SCRAM-SHA-1", 0x16: b"x"})),
    ]


def valid_packets(rng: random.Random, version: int, client_id: str) -> list[bytes]:
    """One of each packet a client sends after CONNECT, and a CONNECT."""
    topic = f"{JUNK_TOPIC}/{rng.randint(0, 9)}"
    props = {0x02: 30, 0x26: [("k", "v")]} if version == 5 else None
    return [
        *(v5_extras(rng, topic) if version == 5 else []),
        wire.publish(topic, rng.randbytes(rng.randint(0, 64)), version=version,
                     qos=rng.randint(0, 2), retain=rng.random() < 0.1,
                     packet_id=rng.randint(1, 65535), props=props),
        wire.subscribe(rng.randint(1, 65535), [(f"{JUNK_TOPIC}/+", 1), ("soak/x/#", 0)],
                       version=version),
        unsubscribe(rng.randint(1, 65535), [f"{JUNK_TOPIC}/+"], version=version),
        wire.pingreq(),
        wire.puback(rng.randint(1, 65535)),
        wire.packet(wire.PUBREC, 0, struct.pack("!H", rng.randint(1, 65535))),
        wire.packet(wire.PUBREL, 0x02, struct.pack("!H", rng.randint(1, 65535))),
        wire.packet(wire.PUBCOMP, 0, struct.pack("!H", rng.randint(1, 65535))),
        valid_connect(rng, version, client_id),
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A random, truncated or bit-flipped copy of `data`."""
    out = bytearray(data)
    choice = rng.randrange(7)
    if choice == 0 and len(out) > 1:  # truncated
        del out[rng.randrange(1, len(out)):]
    elif choice == 1:  # a few bits flipped
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif choice == 2:  # a byte overwritten
        out[rng.randrange(len(out))] = rng.randrange(256)
    elif choice == 3:  # random bytes inserted
        at = rng.randrange(len(out) + 1)
        out[at:at] = rng.randbytes(rng.randint(1, 16))
    elif choice == 4 and len(out) > 1:  # a wrong remaining length
        out[1:2] = wire.varint(rng.choice([0, 1, 127, 128, 16383, 2 ** 21, 2 ** 28 - 1]))
    elif choice == 5:  # fixed header flags changed
        out[0] = (out[0] & 0xF0) | rng.randrange(16)
    else:  # random type and flags
        out[0] = rng.randrange(256)
    return bytes(out)


# -- the attacks --------------------------------------------------------

def random_bytes(a: Attack, rng: random.Random, version: int) -> None:
    if rng.random() < 0.5:
        a.send(valid_connect(rng, version, f"atk-{rng.getrandbits(32):x}"))
    a.send(rng.randbytes(rng.randint(1, 4096)))
    a.until_closed(2.0)


def mutated(a: Attack, rng: random.Random, version: int) -> None:
    """A valid CONNECT (or a mutated one), then a burst of packets, most of
    them mutated, in chunks of random size."""
    client_id = f"atk-{rng.getrandbits(32):x}"
    connect = valid_connect(rng, version, client_id)
    if rng.random() < 0.2:
        a.send(mutate(rng, connect))
    elif a.send(connect):
        a.await_connack()
    stream = bytearray()
    for _ in range(rng.randint(1, 20)):
        packet = rng.choice(valid_packets(rng, version, client_id))
        stream += mutate(rng, packet) if rng.random() < 0.7 else packet
    while stream and a.alive:
        cut = rng.randint(1, len(stream))
        a.send(bytes(stream[:cut]))
        del stream[:cut]
    a.until_closed(rng.uniform(0.2, 2.0))


def huge_length(a: Attack, rng: random.Random, version: int) -> None:
    """A fixed header announcing 256 MB, before or after CONNECT, then a
    stall or megabytes of junk."""
    if rng.random() < 0.7 and a.send(valid_connect(rng, version, f"atk-{rng.getrandbits(32):x}")):
        a.await_connack()
        a.send(bytes([rng.choice([0x30, 0x32, 0x82])]) + HUGE_LENGTH)
    else:
        a.send(b"\x10" + HUGE_LENGTH)
    if rng.random() < 0.5:
        chunk = rng.randbytes(64 * 1024)
        for _ in range(rng.randint(1, 64)):  # up to 4 MB
            if not a.send(chunk):
                break
    a.until_closed(3.0)


def vanish(a: Attack, rng: random.Random, version: int) -> None:
    """Connects, starts a packet and disappears, with FIN or RST."""
    client_id = f"atk-{rng.getrandbits(32):x}"
    if rng.random() < 0.7 and a.send(valid_connect(rng, version, client_id)):
        a.await_connack()
        packet = rng.choice(valid_packets(rng, version, client_id)[:3])
    else:
        packet = valid_connect(rng, version, client_id)
    a.send(packet[: rng.randint(1, max(1, len(packet) - 1))])
    a.hang_up(reset=rng.random() < 0.5)


def subscribe_flood(a: Attack, rng: random.Random, version: int) -> None:
    """SUBSCRIBE packets with hundreds of filters each, then DISCONNECT."""
    if not a.send(valid_connect(rng, version, f"atk-{rng.getrandbits(32):x}")):
        return
    a.await_connack()
    base = rng.getrandbits(32)
    for packet_id in range(1, rng.randint(2, 6)):
        filters = [(f"soak/flood/{base:x}/{packet_id}/{n}/+", rng.randint(0, 2))
                   for n in range(rng.randint(100, 400))]
        if not a.send(wire.subscribe(packet_id, filters, version=version)):
            return
        a.receive(1.0)
    a.send(wire.disconnect(0 if version == 5 else None))
    a.until_closed(2.0)


def takeover(a: Attack, rng: random.Random, version: int) -> None:
    """Connects as one of three shared client ids, often resuming the
    session (kept at most 10 s), subscribes, publishes at QoS 1 and 2 and
    leaves abruptly, unless the next twin takes the session over first."""
    client_id = f"atk-twin-{rng.randrange(3)}"
    props = {wire.SESSION_EXPIRY_INTERVAL: rng.choice([0, 10])} if version == 5 else None
    will = wire.Will(f"{JUNK_TOPIC}/twin", b"gone", qos=1) if rng.random() < 0.5 else None
    if not a.send(wire.connect(client_id, version=version, clean=rng.random() < 0.3,
                               props=props, will=will)):
        return
    a.await_connack()
    burst = wire.subscribe(1, [(f"{JUNK_TOPIC}/#", rng.randint(0, 2))], version=version)
    for packet_id in range(1, rng.randint(2, 20)):
        burst += wire.publish(f"{JUNK_TOPIC}/twin", rng.randbytes(32), version=version,
                              qos=rng.randint(1, 2), packet_id=packet_id)
    a.send(burst)
    leave_at = time.monotonic() + rng.uniform(0, 1.0)
    while a.alive and (left := leave_at - time.monotonic()) > 0:
        a.receive(left)
    a.hang_up(reset=rng.random() < 0.5)


def slow_loris(a: Attack, rng: random.Random, version: int, stop: threading.Event,
               seconds: float) -> None:
    """A CONNECT one byte a second, half a CONNECT then silence, or half a
    fixed header then silence, until the broker closes or `seconds` pass."""
    connect = valid_connect(rng, version, f"atk-loris-{rng.getrandbits(32):x}")
    deadline = time.monotonic() + seconds
    style = rng.randrange(3)
    if style == 0:
        for byte in connect:
            if not a.send(bytes([byte])) or a.receive(1.0) is None:
                return
            if stop.is_set() or time.monotonic() > deadline:
                break
    else:
        a.send(connect[: len(connect) // 2] if style == 1 else b"\x10\xff")
    a.until_closed(deadline - time.monotonic(), stop)


def never_reads(a: Attack, rng: random.Random, version: int, stop: threading.Event,
                seconds: float, qos: int) -> None:
    """Subscribes to '#' with a tiny receive buffer and never reads again,
    while a feeder connection of its own publishes 32 KB messages 20 times
    a second; after `seconds`, drains briefly to tell whether the broker
    closed it. At QoS 0 the broker's writes back up until the socket
    buffers are full; at QoS 1 its unacknowledged window fills first and
    the rest waits in the broker's queue."""
    client_id = f"atk-deaf-{rng.getrandbits(32):x}"
    if not a.send(wire.connect(client_id, version=version, keepalive=0)):
        return
    a.await_connack()
    a.send(wire.subscribe(1, [("#", qos)], version=version))
    feeder = Attack(*a.address, "feeder")
    feeder.send(wire.connect(f"{client_id}-feeder", version=version, keepalive=0))
    feeder.await_connack()
    packet = wire.publish(f"soak/deaf/{client_id}", rng.randbytes(32 * 1024), version=version)
    feed_until = time.monotonic() + seconds
    while time.monotonic() < feed_until and feeder.send(packet):
        if stop.wait(0.05):
            break
    feeder.close()
    a.sent += feeder.sent
    stop.wait(feed_until - time.monotonic())
    drain_until = time.monotonic() + 1.0
    while a.alive and time.monotonic() < drain_until:
        a.receive(0.2)
    if a.alive:
        a.ending = OPEN


BURSTS = {  # kind: (function, weight)
    "random bytes": (random_bytes, 2),
    "mutated packets": (mutated, 6),
    "256 MB length": (huge_length, 2),
    "vanish mid-packet": (vanish, 2),
    "subscribe flood": (subscribe_flood, 1),
    "takeover storm": (takeover, 2),
}


def run(kind: str, host: str, port: int, rng: random.Random, tally: Tally, **kwargs) -> None:
    """Runs one attack of `kind` (a BURSTS kind, "slow loris" or "never
    reads…") and records it."""
    version = rng.choice([4, 5])  # MQTT 3.1.1 or 5.0
    rcvbuf = 4096 if kind.startswith("never reads") else None
    attack = Attack(host, port, kind, rcvbuf=rcvbuf)
    try:
        if attack.alive:
            if kind == "slow loris":
                slow_loris(attack, rng, version, **kwargs)
            elif kind.startswith("never reads"):
                never_reads(attack, rng, version, **kwargs)
            else:
                BURSTS[kind][0](attack, rng, version)
    finally:
        attack.close()
        tally.record(attack)
