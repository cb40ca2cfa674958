"""Steady QoS 1 traffic between two well-behaved clients, as a witness that
a misbehaving connection harms only itself."""

from __future__ import annotations

import threading

from .clients import V311, Client


class SteadyTraffic:
    """A publisher sends numbered QoS 1 messages every `interval` seconds to a
    subscriber until `stop()`, which checks that every one arrived, once and
    in order, and that neither client was disconnected."""

    def __init__(self, broker, interval: float = 0.02, topic: str = "steady/counter"):
        self.topic = topic
        self.interval = interval
        self.subscriber = Client(broker, "steady-sub", V311)
        self.publisher = Client(broker, "steady-pub", V311)
        self.sent = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-traffic", daemon=True)

    def start(self, warm_up: int = 5) -> "SteadyTraffic":
        """Starts, and returns once `warm_up` messages went through."""
        self.subscriber.connect()
        self.subscriber.subscribe(self.topic, 1)
        self.publisher.connect()
        self._thread.start()
        self._received = [int(m.payload) for m in self.subscriber.expect(warm_up)]
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.publisher.publish(self.topic, str(self.sent).encode(), qos=1)
                self.sent += 1
        except BaseException as error:  # reported by stop()
            self._error = error

    def stop(self, after: int = 5) -> None:
        """Lets `after` more messages through, stops, and checks that all
        arrived, once and in order."""
        target = self.sent + after
        received = self._received
        while len(received) < target and self._error is None:
            received.append(int(self.subscriber.get().payload))
        self._stop.set()
        self._thread.join(10)
        assert self._error is None, f"steady publisher failed: {self._error!r}"
        received += [int(m.payload) for m in self.subscriber.expect(self.sent - len(received))]
        assert received == list(range(self.sent)), "steady traffic lost or reordered messages"
        self.subscriber.assert_no_message(within=0.1)
        assert self.subscriber.is_connected and self.publisher.is_connected

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.subscriber.close()
        self.publisher.close()
