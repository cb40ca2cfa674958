"""paho-mqtt clients for the tests, in MQTT 3.1.1 and 5.0.

Each `Client` runs paho's network loop on its own thread, never reconnects by
itself (a reconnect would hide the very behaviour under test), and puts every
message it receives on a thread-safe queue. Every wait has a timeout and fails
the test with an AssertionError when it expires.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

V311 = 4
V5 = 5
VERSIONS = {V311: mqtt.MQTTv311, V5: mqtt.MQTTv5}
WAIT = 5.0  # the default bound of every wait, in seconds


def props(packet_type: int, **values) -> Properties:
    """paho Properties from keyword arguments: props(PacketTypes.PUBLISH,
    MessageExpiryInterval=5, UserProperty=[("k", "v")])."""
    result = Properties(packet_type)
    for name, value in values.items():
        setattr(result, name, value)
    return result


def publish_props(**values) -> Properties:
    return props(PacketTypes.PUBLISH, **values)


def props_dict(properties: Properties | None) -> dict:
    """The properties that are present, by paho's attribute name."""
    if properties is None:
        return {}
    out = {}
    for name in properties.names:
        attribute = name.replace(" ", "")
        if hasattr(properties, attribute):
            out[attribute] = getattr(properties, attribute)
    return out


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: dict = field(default_factory=dict)


@dataclass
class Connack:
    reason_code: int
    session_present: bool
    properties: dict


@dataclass
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    delay: int | None = None  # MQTT 5 will delay interval


class Client:
    """A paho client with explicit id, version and session settings."""

    def __init__(
        self,
        broker,
        client_id: str,
        version: int = V5,
        *,
        clean: bool = True,
        session_expiry: int | None = None,
        keepalive: int = 60,
        will: Will | None = None,
        connect_properties: dict | None = None,
        port: int | None = None,
        transport: str = "tcp",
        ws_path: str | None = None,
        tls: dict | None = None,
        username: str | None = None,
        password: str | None = None,
    ):
        """`port` overrides the broker's (another listener); `transport` is
        paho's ("tcp" or "websockets", with `ws_path`); `tls` holds the
        arguments of paho's `tls_set` (ca_certs, certfile, keyfile)."""
        self.broker = broker
        self.port = port
        self._framed = tls is not None or transport != "tcp"
        self.client_id = client_id
        self.version = version
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.connect_properties = connect_properties or {}
        self.messages: queue.Queue[Message] = queue.Queue()
        self.connack: Connack | None = None
        self.disconnect_reason: int | None = None
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._subacks: dict[int, list[int]] = {}
        self._acks = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=VERSIONS[version],
            clean_session=clean if version == V311 else None,
            reconnect_on_failure=False,
            transport=transport,
        )
        if ws_path is not None:
            self.paho.ws_set_options(path=ws_path)
        if tls is not None:
            self.paho.tls_set(**tls)
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will:
            will_props = None
            if will.delay is not None:
                will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=will.delay)
            self.paho.will_set(will.topic, will.payload, will.qos, will.retain, will_props)
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe

    # -- paho callbacks (on the loop thread) -----------------------------
    def _on_connect(self, _client, _userdata, flags, reason_code, properties):
        self.connack = Connack(reason_code.value, flags.session_present, props_dict(properties))
        self._connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        self.disconnect_reason = reason_code.value
        self._disconnected.set()

    def _on_message(self, _client, _userdata, msg):
        self.messages.put(Message(
            msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), bool(msg.dup),
            props_dict(getattr(msg, "properties", None)),
        ))

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self._acks:
            self._subacks[mid] = [code.value for code in reason_codes]
            self._acks.notify_all()

    def _on_unsubscribe(self, _client, _userdata, mid, _reason_codes, _properties):
        with self._acks:
            self._subacks[mid] = []
            self._acks.notify_all()

    def _loop(self):
        while not self._stop.is_set():
            if self.paho.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                self._disconnected.set()
                return

    # -- connection ------------------------------------------------------
    def connect(self, timeout: float = WAIT, *, expect_success: bool = True) -> Connack:
        """Connects and waits for CONNACK."""
        properties = None
        if self.version == V5:
            values = dict(self.connect_properties)
            if self.session_expiry is not None:
                values["SessionExpiryInterval"] = self.session_expiry
            properties = props(PacketTypes.CONNECT, **values) if values else None
        self.paho.connect(
            self.broker.host, self.port or self.broker.port, self.keepalive,
            clean_start=self.clean if self.version == V5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._thread = threading.Thread(target=self._loop, name=f"paho-{self.client_id}", daemon=True)
        if self._framed:
            # Over TLS or WebSocket, two threads writing at once (a publish
            # here, a PUBACK in the loop thread) interleave records or frames
            # and corrupt the stream. paho only queues writes for its loop
            # thread when it knows of one: tell it (paho has no public way).
            self.paho._thread = self._thread
        self._thread.start()
        if not self._connected.wait(timeout):
            raise AssertionError(f"{self.client_id}: no CONNACK within {timeout} s")
        if expect_success:
            assert self.connack.reason_code == 0, f"{self.client_id}: CONNACK {self.connack}"
        return self.connack

    def disconnect(self, reason_code: int | None = None, timeout: float = WAIT) -> None:
        """A normal DISCONNECT (with the given MQTT 5 reason code)."""
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code) if reason_code else None
        self.paho.disconnect(reason)
        self.wait_disconnected(timeout)
        self._stop_loop()

    def drop(self) -> None:
        """Closes the socket without DISCONNECT, as a crashed client would."""
        self._stop_loop()
        sock = self.paho.socket()
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def _stop_loop(self) -> None:
        self._stop.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(WAIT)

    def wait_disconnected(self, timeout: float = WAIT) -> int | None:
        """Waits until the connection is gone; returns the DISCONNECT reason."""
        if not self._disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id}: still connected after {timeout} s")
        return self.disconnect_reason

    @property
    def is_connected(self) -> bool:
        return self.paho.is_connected() and not self._disconnected.is_set()

    # -- subscriptions ---------------------------------------------------
    def subscribe(
        self,
        topic: str,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        subscription_id: int | None = None,
        timeout: float = WAIT,
    ) -> int:
        """Subscribes and returns the granted QoS (or MQTT 5 reason code)."""
        if self.version == V5:
            options = mqtt.SubscribeOptions(
                qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                retainHandling=retain_handling,
            )
            properties = None
            if subscription_id is not None:
                properties = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=subscription_id)
            rc, mid = self.paho.subscribe(topic, options=options, properties=properties)
        else:
            rc, mid = self.paho.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        return self._wait_ack(mid, timeout)[0]

    def unsubscribe(self, topic: str, timeout: float = WAIT) -> None:
        rc, mid = self.paho.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        self._wait_ack(mid, timeout)

    def _wait_ack(self, mid: int, timeout: float) -> list[int]:
        with self._acks:
            if not self._acks.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK/UNSUBACK within {timeout} s")
            return self._subacks.pop(mid)

    # -- publishing ------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        *,
        wait: bool = True,
        timeout: float = WAIT,
    ) -> mqtt.MQTTMessageInfo:
        """Publishes; with `wait`, returns once the QoS 1/2 flow is complete
        (or the QoS 0 packet written)."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"{self.client_id}: publish failed: {info.rc}"
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"{self.client_id}: publish not acknowledged in {timeout} s"
        return info

    # -- receiving -------------------------------------------------------
    def get(self, timeout: float = WAIT) -> Message:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout} s") from None

    def expect(self, count: int, timeout: float = WAIT) -> list[Message]:
        """The next `count` messages, all within `timeout` overall."""
        deadline = time.monotonic() + timeout
        received = []
        while len(received) < count:
            remaining = deadline - time.monotonic()
            try:
                received.append(self.messages.get(timeout=max(remaining, 0)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: {len(received)} of {count} messages within {timeout} s: "
                    f"{[(m.topic, m.payload) for m in received]}"
                ) from None
        return received

    def until(self, topic: str, timeout: float = WAIT) -> list[Message]:
        """Messages up to and including the first one on `topic` (a sentinel
        published after everything the test wants to see or not see)."""
        deadline = time.monotonic() + timeout
        received = []
        while True:
            message = self.get(max(deadline - time.monotonic(), 0))
            received.append(message)
            if message.topic == topic:
                return received

    def assert_no_message(self, within: float = 0.5) -> None:
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected message {message}")

    def collect(self, within: float = 0.5) -> list[Message]:
        """Every message that arrives within `within` seconds from now."""
        deadline = time.monotonic() + within
        collected = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                collected.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return collected

    def drain(self) -> list[Message]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Teardown: leaves without a trace, whatever state the client is in."""
        self._stop_loop()
        try:
            sock = self.paho.socket()
            if sock is not None:
                sock.close()
        except OSError:
            pass


@contextmanager
def client_maker(broker_of: Callable[[int], object]) -> Iterator[Callable[..., Client]]:
    """make(node, client_id, version=V5, *, connect=True, **options) -> a
    `Client` of `broker_of(node)` (a cluster's node), connected unless told
    not to; every client made is closed on exit."""
    created: list[Client] = []

    def make(node: int, client_id: str, version: int = V5, *, connect: bool = True,
             **options) -> Client:
        client = Client(broker_of(node), client_id, version, **options)
        created.append(client)
        if connect:
            client.connect()
        return client

    try:
        yield make
    finally:
        for client in created:
            client.close()
