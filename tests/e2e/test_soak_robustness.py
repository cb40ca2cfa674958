"""A soak of abusive clients next to good ones.

For a bounded time (E2E_SOAK_SECONDS, 20 s by default) several attackers at a
time open connections that send random bytes, random, truncated and
bit-flipped copies of valid MQTT 3.1.1 and 5.0 packets, remaining lengths
announcing 256 MB, slow-loris headers, half packets before vanishing,
SUBSCRIBE floods and takeovers among shared client ids, while two subscribers
to '#' (at QoS 0 and 1), fed 32 KB messages, never read their sockets (see
harness/attacks.py). Meanwhile 4 paho publishers send numbered QoS 1 messages
(E2E_SOAK_RATE a second each, 50 by default) to 2 paho subscribers.

At the end: the broker process is alive and accepts a fresh CONNECT, its log
has no panic, its resident memory never grew by more than E2E_SOAK_RSS_MB (200
by default), its file descriptors are back near where they started, every
publish was acknowledged and every subscriber received every message
(duplicates are counted, not failed). Tern's log must also have no ERROR line,
and no slow loris may outlive its connect_timeout. The counts are printed
(`pytest -s`) and attached to any failure. E2E_SOAK_SEED replays the
attackers' choices (not their timing).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import pytest

from harness import attacks
from harness import raw as wire
from harness.attacks import format_table
from harness.clients import V5, V311

SOAK_SECONDS = float(os.environ.get("E2E_SOAK_SECONDS", "20"))
RATE = float(os.environ.get("E2E_SOAK_RATE", "50"))
RSS_BOUND_MB = float(os.environ.get("E2E_SOAK_RSS_MB", "200"))
SEED = int(os.environ.get("E2E_SOAK_SEED", str(random.randrange(2 ** 32))))
BURST_WORKERS = 6  # attackers at a time, besides the slow and the deaf ones
SLOW_LORIS = 3
PUBLISHERS, SUBSCRIBERS = 4, 2
TOPIC = "soak/good"
FD_SLACK = 8  # descriptors the broker may keep beyond its start (logs, store)
SETTLE = 10.0  # bound of each wait after the soak, in seconds
CONNECT_TIMEOUT = 10  # Tern's default connect_timeout


class ProcessWatch:
    """Samples the broker's resident memory and open descriptors every
    0.1 s on a thread of its own."""

    def __init__(self, pid: int):
        self.pid = pid
        self.rss_kb: list[int] = []
        self.fds: list[int] = []
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-watch", daemon=True)

    def sample(self) -> tuple[int, int]:
        with open(f"/proc/{self.pid}/status") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        self.rss_kb.append(rss)
        self.fds.append(fds)
        return rss, fds

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.sample()
            except (OSError, StopIteration) as error:
                self.lost = f"the broker process vanished: {error!r}"
                return

    def start(self) -> "ProcessWatch":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Publisher:
    """Numbered QoS 1 messages at RATE a second until stopped."""

    def __init__(self, client, index: int):
        self.client = client
        self.index = index
        self.infos = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"soak-pub-{index}", daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                payload = f"{self.index}:{len(self.infos)}".encode()
                self.infos.append(self.client.publish(f"{TOPIC}/{self.index}", payload, qos=1,
                                                      wait=False))
                next_at += 1 / RATE
                self._stop.wait(max(next_at - time.monotonic(), 0))
        except BaseException as error:  # reported at the end
            self.error = error

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(SETTLE)

    def unacknowledged(self, deadline: float) -> int:
        missing = 0
        for info in self.infos:
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.001))
            except (RuntimeError, ValueError):
                pass
            missing += not info.is_published()
        return missing


def received_messages(subscriber, expected: set[tuple[int, int]], deadline: float):
    """Every message until all of `expected` arrived or `deadline`:
    (a Counter of (publisher, sequence), messages that are not ours)."""
    seen: Counter[tuple[int, int]] = Counter()
    foreign = 0
    while True:
        for message in subscriber.drain():
            try:
                publisher, sequence = map(int, message.payload.split(b":"))
                seen[publisher, sequence] += 1
            except ValueError:
                foreign += 1
        if expected <= seen.keys() or time.monotonic() > deadline:
            return seen, foreign
        time.sleep(0.05)


def attack_loop(broker, kind_of, rng: random.Random, tally, until: threading.Event,
                errors: list[str], *, once: bool = False, **kwargs):
    """Runs attacks of kind `kind_of(rng)` one after the other until
    `until` is set (or just one, with `once`); a failure of the attacker
    itself goes to `errors`."""
    try:
        while not until.is_set():
            attacks.run(kind_of(rng), broker.host, broker.port, rng, tally, **kwargs)
            if once:
                return
    except Exception as error:  # a bug of the test, reported at the end
        errors.append(f"{threading.current_thread().name}: {error!r}")


def probe(broker) -> str | None:
    """A fresh CONNECT and PINGREQ; None if both are answered, else why not."""
    try:
        client = wire.RawClient(broker.host, broker.port, version=V5)
    except OSError as error:
        return f"cannot connect: {error!r}"
    try:
        connack = client.connect("soak-probe")
        if connack.reason != 0:
            return f"CONNACK reason {connack.reason:#x}"
        client.send(wire.pingreq())
        client.expect(wire.PINGRESP)
        return None
    except (AssertionError, OSError, TimeoutError, wire.Closed) as error:
        return f"no CONNACK and PINGRESP: {error!r}"
    finally:
        client.close()


# About SOAK_SECONDS + 3 s when all is well; the bounded waits that follow
# the soak (joins, acknowledgements, deliveries, descriptors, probe) can add
# a minute at most when something is wrong.
@pytest.mark.time_limit(SOAK_SECONDS + 65)
def test_abusive_clients_neither_harm_the_broker_nor_cost_good_clients_a_message(
        broker, mqtt, request):
    subscribers = [mqtt(f"soak-sub-{i}", V311 if i % 2 else V5) for i in range(SUBSCRIBERS)]
    for subscriber in subscribers:
        assert subscriber.subscribe(f"{TOPIC}/#", 1) in (1, 2)
    publishers = [Publisher(mqtt(f"soak-pub-{i}", V5 if i % 2 else V311), i)
                  for i in range(PUBLISHERS)]
    watch = ProcessWatch(broker.process.pid).start()
    request.addfinalizer(watch.stop)  # also when a time limit interrupts the test
    rss_start, fds_start = watch.rss_kb[0], watch.fds[0]

    tally = attacks.Tally()
    stop = threading.Event()
    soak_end = time.monotonic() + SOAK_SECONDS
    kinds, weights = list(attacks.BURSTS), [w for _, w in attacks.BURSTS.values()]
    attacker_errors: list[str] = []

    def attackers(name, count, kind_of, seed, **kwargs):
        return [threading.Thread(
            target=attack_loop, name=f"soak-{name}-{n}", daemon=True,
            args=(broker, kind_of, random.Random(seed + n), tally, stop, attacker_errors),
            kwargs=kwargs) for n in range(count)]

    workers = [
        *attackers("burst", BURST_WORKERS, lambda rng: rng.choices(kinds, weights)[0], SEED),
        *attackers("loris", SLOW_LORIS, lambda _rng: "slow loris", SEED + 100,
                   stop=stop, seconds=SOAK_SECONDS),
    ]
    for qos in (0, 1):  # a subscriber to '#' that never reads, at each QoS
        kind = f"never reads, QoS {qos}"
        workers += attackers(f"deaf-qos{qos}", 1, lambda _rng, kind=kind: kind, SEED + 200 + qos,
                             once=True, stop=stop, seconds=SOAK_SECONDS, qos=qos)
    try:
        for publisher in publishers:
            publisher.start()
        for worker in workers:
            worker.start()
        stop.wait(SOAK_SECONDS)
    finally:
        stop.set()
        for worker in workers:
            worker.join(max(soak_end + 15 - time.monotonic(), 0.1))
        for publisher in publishers:
            publisher.stop()
    stragglers = [w.name for w in workers if w.is_alive()]

    # Every publish acknowledged, every message received by every subscriber.
    acks_deadline = time.monotonic() + SETTLE
    published = [len(p.infos) for p in publishers]
    unacked = [p.unacknowledged(acks_deadline) for p in publishers]
    expected = {(p.index, seq) for p in publishers for seq in range(len(p.infos))}
    receive_deadline = time.monotonic() + SETTLE
    received = [received_messages(s, expected, receive_deadline) for s in subscribers]

    # Descriptors back down once the attackers left.
    fds_deadline = time.monotonic() + SETTLE
    while watch.fds[-1] > fds_start + FD_SLACK and time.monotonic() < fds_deadline:
        time.sleep(0.2)
    probe_failure = probe(broker) if broker.running else "the broker process is gone"
    watch.stop()
    rss_peak, rss_end = max(watch.rss_kb), watch.rss_kb[-1]
    fds_peak, fds_end = max(watch.fds), watch.fds[-1]
    log = broker.log().splitlines()
    panics = [line for line in log if "panicked" in line]
    # Tern logs a client's misbehaviour at INFO at most: an ERROR line is
    # the broker's own failure (Mosquitto's log has no levels to check).
    errors = [line for line in log if " ERROR " in line] if broker.kind == "tern" else []

    good_rows = [[f"publisher {p.index}", published[i], published[i] - unacked[i],
                  "", "", "", "", "connected" if p.client.is_connected else "DISCONNECTED"]
                 for i, p in enumerate(publishers)]
    for subscriber, (seen, foreign) in zip(subscribers, received):
        good_rows.append([subscriber.client_id, "", "", sum(seen.values()),
                          len(expected - seen.keys()),
                          sum(count - 1 for count in seen.values()), foreign,
                          "connected" if subscriber.is_connected else "DISCONNECTED"])
    summary = "\n".join([
        f"soak of {SOAK_SECONDS:g} s against {broker.kind}, E2E_SOAK_SEED={SEED}",
        tally.table(),
        "",
        format_table(["good client", "published", "acked", "received", "missing",
                      "duplicates", "foreign", "state"], good_rows),
        "",
        format_table(["broker", "start", "peak", "end"], [
            ["RSS MB", *(f"{kb / 1024:.1f}" for kb in (rss_start, rss_peak, rss_end))],
            ["open fds", fds_start, fds_peak, fds_end]]),
    ])
    print("\n" + summary)

    failures = []
    if not broker.running or watch.lost:
        failures.append(f"the broker died during the soak ({watch.lost or 'not running'})")
    if probe_failure:
        failures.append(f"a fresh client is not served after the soak: {probe_failure}")
    if panics:
        failures.append(f"the broker log has panics: {panics[:3]}")
    if errors:
        failures.append(f"the broker logged {len(errors)} errors, e.g.: {errors[:3]}")
    # Tern closes a socket that has not sent CONNECT after connect_timeout
    # (10 s by default), however slowly it trickles (Mosquitto kept them
    # open for the whole soak).
    loris_life = tally.held_open["slow loris"]
    if broker.kind == "tern" and loris_life > CONNECT_TIMEOUT + 3:
        failures.append(f"a slow-loris connection stayed open {loris_life:.0f} s "
                        f"(connect_timeout is {CONNECT_TIMEOUT} s)")
    if rss_peak - rss_start > RSS_BOUND_MB * 1024:
        failures.append(f"RSS grew by {(rss_peak - rss_start) / 1024:.0f} MB "
                        f"(bound {RSS_BOUND_MB:g} MB)")
    if fds_end > fds_start + FD_SLACK:
        failures.append(f"{fds_end} descriptors open {SETTLE:g} s after the attackers left, "
                        f"{fds_start} before they came (slack {FD_SLACK})")
    if stragglers:
        failures.append(f"attacker threads still running: {stragglers}")
    if attacker_errors:
        failures.append(f"attackers failed (a bug of the test): {attacker_errors[:3]}")
    if tally.total() < 2 * SOAK_SECONDS:
        failures.append(f"only {tally.total()} attacker connections: the soak proved little")
    for publisher, count, missing in zip(publishers, published, unacked):
        if publisher.error is not None:
            failures.append(f"publisher {publisher.index} failed: {publisher.error!r}")
        if count < RATE * SOAK_SECONDS / 4:
            failures.append(f"publisher {publisher.index} sent only {count} messages")
        if missing:
            failures.append(f"publisher {publisher.index}: {missing} of {count} not acknowledged")
    for subscriber, (seen, _foreign) in zip(subscribers, received):
        lost = sorted(expected - seen.keys())
        if lost:
            failures.append(f"{subscriber.client_id} lost {len(lost)} messages, "
                            f"e.g. (publisher, sequence) {lost[:5]}")
    for client in [*subscribers, *(p.client for p in publishers)]:
        if not client.is_connected:
            failures.append(f"good client {client.client_id} was disconnected")
    assert not failures, "\n".join(failures) + "\n\n" + summary
