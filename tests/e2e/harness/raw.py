"""A raw MQTT client over a plain socket.

paho never sends a malformed packet, a PUBLISH before CONNECT or a CONNECT
with an unknown protocol level, and it always answers PINGs and
acknowledgements. The tests that need exactly those bytes, or a client that
goes silent, build packets here. Only what the tests use is implemented.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Control packet types (the high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
AUTH = 15

# MQTT 5 property identifiers and their wire kinds.
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTY_KINDS = {
    0x01: _BYTE,  # payload format indicator
    0x02: _U32,  # message expiry interval
    0x03: _STR,  # content type
    0x08: _STR,  # response topic
    0x09: _BIN,  # correlation data
    0x0B: _VARINT,  # subscription identifier
    0x11: _U32,  # session expiry interval
    0x12: _STR,  # assigned client identifier
    0x13: _U16,  # server keep alive
    0x15: _STR,  # authentication method
    0x16: _BIN,  # authentication data
    0x17: _BYTE,  # request problem information
    0x18: _U32,  # will delay interval
    0x19: _BYTE,  # request response information
    0x1A: _STR,  # response information
    0x1C: _STR,  # server reference
    0x1F: _STR,  # reason string
    0x21: _U16,  # receive maximum
    0x22: _U16,  # topic alias maximum
    0x23: _U16,  # topic alias
    0x24: _BYTE,  # maximum qos
    0x25: _BYTE,  # retain available
    0x26: _PAIR,  # user property
    0x27: _U32,  # maximum packet size
    0x28: _BYTE,  # wildcard subscription available
    0x29: _BYTE,  # subscription identifier available
    0x2A: _BYTE,  # shared subscription available
}
SESSION_EXPIRY_INTERVAL = 0x11
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def utf8(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def properties(props: dict[int, object] | None) -> bytes:
    """Encodes MQTT 5 properties; a user property value is a list of pairs."""
    body = bytearray()
    for ident, value in (props or {}).items():
        kind = PROPERTY_KINDS[ident]
        values = value if kind == _PAIR else [value]
        for item in values:
            body += varint(ident)
            if kind == _BYTE:
                body.append(item)
            elif kind == _U16:
                body += struct.pack("!H", item)
            elif kind == _U32:
                body += struct.pack("!I", item)
            elif kind == _VARINT:
                body += varint(item)
            elif kind in (_STR, _BIN):
                body += utf8(item)
            else:
                body += utf8(item[0]) + utf8(item[1])
    return varint(len(body)) + bytes(body)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


@dataclass
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: dict[int, object] | None = None


def connect(
    client_id: str,
    *,
    version: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    will: Will | None = None,
    props: dict[int, object] | None = None,
    protocol_name: str = "MQTT",
    username: str | None = None,
    password: bytes | None = None,
) -> bytes:
    """CONNECT for MQTT 3.1.1 (version 4) or 5.0 (version 5); any level may be
    given to test refusals."""
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    if will:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
    body = utf8(protocol_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += properties(props)
    body += utf8(client_id)
    if will:
        if version == 5:
            body += properties(will.properties)
        body += utf8(will.topic) + utf8(will.payload)
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return packet(CONNECT, 0, body)


def auth(reason: int, props: dict[int, object]) -> bytes:
    """AUTH (MQTT 5) with a reason code and properties."""
    return packet(AUTH, 0, bytes([reason]) + properties(props))


def publish(
    topic: str,
    payload: bytes,
    *,
    version: int = 4,
    qos: int = 0,
    retain: bool = False,
    packet_id: int = 1,
    props: dict[int, object] | None = None,
) -> bytes:
    body = utf8(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == 5:
        body += properties(props)
    return packet(PUBLISH, qos << 1 | int(retain), body + payload)


def subscribe(
    packet_id: int, filters: list[tuple[str, int]], *, version: int = 4
) -> bytes:
    """SUBSCRIBE; each filter comes with its options byte (the QoS in 3.1.1)."""
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += properties(None)
    for topic, options in filters:
        body += utf8(topic) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def puback(packet_id: int) -> bytes:
    return packet(PUBACK, 0, struct.pack("!H", packet_id))


def pingreq() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect(reason: int | None = None) -> bytes:
    return packet(DISCONNECT, 0, b"" if reason is None else bytes([reason]))


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes
    version: int = 4
    props: dict[int, object] = field(default_factory=dict)

    @property
    def reason(self) -> int:
        """The CONNACK return/reason code, or the DISCONNECT reason (0 when absent)."""
        if self.kind == CONNACK:
            return self.body[1]
        if self.kind in (DISCONNECT, AUTH):
            return self.body[0] if self.body else 0
        if self.kind in (PUBACK, PUBREC):
            return self.body[2] if len(self.body) > 2 else 0
        raise ValueError(f"packet type {self.kind} has no single reason code")

    @property
    def session_present(self) -> bool:
        assert self.kind == CONNACK
        return bool(self.body[0] & 1)

    def publish_fields(self) -> tuple[str, int | None, bytes]:
        """(topic, packet id or None, payload) of a PUBLISH."""
        assert self.kind == PUBLISH
        (length,) = struct.unpack_from("!H", self.body)
        topic = self.body[2 : 2 + length].decode()
        pos, packet_id = 2 + length, None
        if self.flags & 0x06:
            (packet_id,) = struct.unpack_from("!H", self.body, pos)
            pos += 2
        if self.version == 5:
            size, used = _read_varint(self.body, pos)
            pos += used + size
        return topic, packet_id, self.body[pos:]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift, used = 0, 0, 0
    while True:
        byte = data[pos + used]
        used += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, used


def parse_properties(data: bytes) -> dict[int, object]:
    """Decodes a property block (length prefix included)."""
    size, pos = _read_varint(data, 0)
    end, out = pos + size, {}
    while pos < end:
        ident, used = _read_varint(data, pos)
        pos += used
        kind = PROPERTY_KINDS[ident]
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _U16:
            (value,), pos = struct.unpack_from("!H", data, pos), pos + 2
        elif kind == _U32:
            (value,), pos = struct.unpack_from("!I", data, pos), pos + 4
        elif kind == _VARINT:
            value, used = _read_varint(data, pos)
            pos += used
        elif kind in (_STR, _BIN):
            (length,) = struct.unpack_from("!H", data, pos)
            value, pos = data[pos + 2 : pos + 2 + length], pos + 2 + length
        else:
            raise NotImplementedError("user properties are not decoded")
        out[ident] = value
    return out


class Closed(Exception):
    """The broker closed the connection."""


class RawClient:
    """One TCP connection to the broker that sends exactly the given bytes."""

    def __init__(self, host: str, port: int, *, version: int = 4, timeout: float = 5.0):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            raise Closed
        self._buffer += chunk

    def read(self, timeout: float = 5.0) -> Packet:
        """The next packet; raises Closed at end of stream, TimeoutError if
        nothing whole arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            packet = self._take()
            if packet:
                return packet
            self._fill(deadline)

    def _take(self) -> Packet | None:
        if len(self._buffer) < 2:
            return None
        length, shift, pos = 0, 0, 1
        while True:
            if pos >= len(self._buffer):
                return None
            byte = self._buffer[pos]
            length |= (byte & 0x7F) << shift
            shift, pos = shift + 7, pos + 1
            if not byte & 0x80:
                break
        if len(self._buffer) < pos + length:
            return None
        first, body = self._buffer[0], bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        packet = Packet(first >> 4, first & 0x0F, body, self.version)
        if self.version == 5:
            if packet.kind == CONNACK and len(body) > 2:
                packet.props = parse_properties(body[2:])
            elif packet.kind in (DISCONNECT, AUTH) and len(body) > 1:
                packet.props = parse_properties(body[1:])
        return packet

    def expect(self, kind: int, timeout: float = 5.0) -> Packet:
        packet = self.read(timeout)
        assert packet.kind == kind, f"expected packet type {kind}, got {packet}"
        return packet

    def connect(self, client_id: str, **kwargs) -> Packet:
        """Sends CONNECT and returns the CONNACK."""
        self.send(connect(client_id, version=self.version, **kwargs))
        return self.expect(CONNACK)

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Reads until the broker closes the connection; returns what it sent
        before closing. Fails if the connection is still open at the timeout."""
        received = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                received.append(self.read(max(deadline - time.monotonic(), 0.001)))
        except Closed:
            return received
        except TimeoutError:
            raise AssertionError(
                f"broker kept the connection open for {timeout} s; it sent {received}"
            ) from None

    def close(self) -> None:
        self.sock.close()
