"""Listener transports with real clients: MQTT over TLS, mutual TLS,
WebSocket and secure WebSocket, the PROXY protocol, certificate reload on
SIGHUP and per-listener connection limits (Tern only: they need Tern's
`[[listener]]` configuration).

Certificates are made at test time with the `openssl` command in a temporary
directory (no private key is committed): a CA, a server certificate for
localhost and 127.0.0.1, a client certificate (CN device-17), an expired
client certificate, and a second CA nobody trusts with a client certificate
of its own.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import ssl
import struct
import subprocess
from pathlib import Path

import pytest

from harness import raw
from harness.broker import Broker, broker_kind, free_port, tern_binary
from harness.cli import Sub, pub
from harness.clients import V5, V311, Client

pytestmark = pytest.mark.skipif(
    broker_kind() != "tern", reason="uses Tern's [[listener]] configuration")

HOST = "127.0.0.1"


# -- certificates ---------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, f"openssl {' '.join(args)} failed:\n{result.stderr}"


class Pki:
    """Certificates in `dir`: `path(name)` is NAME.pem, `key(name)` NAME.key."""

    LEAF_EXTENSIONS = ("basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n")

    def __init__(self, directory: Path):
        self.dir = directory
        self.serial = 100

    def path(self, name: str) -> str:
        return str(self.dir / f"{name}.pem")

    def key(self, name: str) -> str:
        return str(self.dir / f"{name}.key")

    def ca(self, name: str) -> None:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
                 "-subj", f"/CN=Tern test {name}", cwd=self.dir)

    def leaf(self, name: str, ca: str, cn: str, extensions: str, *,
             dates: tuple[str, str] | None = None) -> None:
        """A key and a certificate signed by `ca`; `dates` (YYYYMMDDHHMMSSZ,
        start and end) makes one valid in the past only."""
        self.serial += 1
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                 cwd=self.dir)
        (self.dir / f"{name}.ext").write_text(self.LEAF_EXTENSIONS + extensions)
        if dates is None:
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                     f"{ca}.key", "-set_serial", str(self.serial), "-days", "30",
                     "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=self.dir)
            return
        # `openssl x509` cannot back-date; `openssl ca` can.
        db = self.dir / f"{name}-db"
        db.mkdir()
        (db / "index.txt").write_text("")
        (db / "serial").write_text(f"{self.serial:04X}\n")
        (self.dir / f"{name}-ca.cnf").write_text(
            "[ca]\ndefault_ca = test\n[test]\n"
            f"database = {db}/index.txt\nnew_certs_dir = {db}\nserial = {db}/serial\n"
            "default_md = sha256\npolicy = any\nunique_subject = no\n"
            "[any]\ncommonName = supplied\n")
        _openssl("ca", "-batch", "-config", f"{name}-ca.cnf", "-cert", f"{ca}.pem",
                 "-keyfile", f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.pem",
                 "-startdate", dates[0], "-enddate", dates[1], "-extfile", f"{name}.ext",
                 "-notext", cwd=self.dir)

    def server(self, name: str) -> None:
        self.leaf(name, "ca", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")

    def client(self, name: str, ca: str, cn: str, **options) -> None:
        self.leaf(name, ca, cn, "extendedKeyUsage=clientAuth\n", **options)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    certificates = Pki(tmp_path_factory.mktemp("pki"))
    certificates.ca("ca")
    certificates.server("server")
    certificates.client("client", "ca", "device-17")
    certificates.client("expired", "ca", "device-old",
                        dates=("20200101000000Z", "20200201000000Z"))
    certificates.ca("rogue-ca")
    certificates.client("rogue-client", "rogue-ca", "device-17")
    return certificates


# -- brokers --------------------------------------------------------------

def listener(kind: str, port: int, name: str, **settings) -> str:
    """One [[listener]] table in TOML."""
    lines = ["[[listener]]", f'bind = "{HOST}:{port}"', f'kind = "{kind}"', f'name = "{name}"']
    for key, value in settings.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def tern_with(request, tmp_path):
    """tern_with(config_text) -> a running Tern with that config file, besides
    its plain listener on `broker.port`; killed at teardown, its log in the
    report of a failed test."""
    started: list[Broker] = []
    request.node.extra_brokers = started

    def start(config: str) -> Broker:
        instance = Broker("tern", tmp_path / f"broker{len(started)}", config=config)
        started.append(instance)
        instance.start_fresh()
        return instance

    yield start
    for instance in started:
        instance.cleanup()


def tls_context(pki: Pki, ca: str = "ca", client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path(ca))
    if client is not None:
        context.load_cert_chain(pki.path(client), pki.key(client))
    return context


def server_fingerprint(pki: Pki, port: int) -> str:
    """SHA-256 of the certificate the broker presents to a new handshake."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        with tls_context(pki).wrap_socket(sock, server_hostname="localhost") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(pki: Pki, name: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(Path(pki.path(name)).read_text())).hexdigest()


def cli_pub(port: int, *tls_args: str, client_id: str = "cli-pub",
            extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-i", client_id, "-t", "tls/cli",
               "-m", "hello", "-q", "1", *tls_args, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=10)


# -- TLS ------------------------------------------------------------------

def test_paho_over_tls_reaches_a_plain_subscriber_and_back(pki, tern_with, version):
    port = free_port()
    broker = tern_with(listener("tls", port, "secure", cert=pki.path("server"),
                                key=pki.key("server")))
    tls = {"ca_certs": pki.path("ca")}
    secure = Client(broker, "secure", version, port=port, tls=tls)
    plain = Client(broker, "plain", version)
    try:
        secure.connect()
        plain.connect()
        secure.subscribe("tls/#", qos=1)
        plain.subscribe("tls/#", qos=1)
        plain.publish("tls/from-plain", b"a", qos=1)
        secure.publish("tls/from-tls", b"b", qos=1)
        assert {(m.topic, m.payload) for m in secure.expect(2)} == {
            ("tls/from-plain", b"a"), ("tls/from-tls", b"b")}
        assert {(m.topic, m.payload) for m in plain.expect(2)} == {
            ("tls/from-plain", b"a"), ("tls/from-tls", b"b")}
    finally:
        secure.close()
        plain.close()


def test_a_client_that_does_not_trust_the_server_ca_refuses_the_broker(pki, tern_with):
    port = free_port()
    tern_with(listener("tls", port, "secure", cert=pki.path("server"), key=pki.key("server")))
    refused = cli_pub(port, "--cafile", pki.path("rogue-ca"))
    assert refused.returncode != 0, refused
    trusted = cli_pub(port, "--cafile", pki.path("ca"))
    assert trusted.returncode == 0, trusted.stderr


def mtls_config(pki: Pki, port: int) -> str:
    return listener("tls", port, "mtls", cert=pki.path("server"), key=pki.key("server"),
                    ca=pki.path("ca"), require_client_cert=True, use_identity_as_username=True)


def test_mosquitto_clients_over_mutual_tls_with_the_identity_as_user_name(pki, tern_with):
    port = free_port()
    broker = tern_with(mtls_config(pki, port))
    identity = ("--cafile", pki.path("ca"), "--cert", pki.path("client"),
                "--key", pki.key("client"))
    sub = Sub(broker, ["tls/#"], qos=1, extra=["-p", str(port), *identity])
    try:
        sub.wait_subscribed()
        sent = cli_pub(port, *identity, client_id="mtls-pub", extra=("-u", "someone-else"))
        assert sent.returncode == 0, sent.stderr
        [message] = sub.expect(1)
        assert (message.topic, message.payload) == ("tls/cli", "hello")
    finally:
        sub.close()
    # The user name the protocol saw is the certificate's, not the one sent.
    line = broker.wait_for_log('client_id="mtls-pub"')
    assert 'username="device-17"' in line, line
    assert "listener=mtls" in line, line


@pytest.mark.parametrize("certificate,reason", [
    (None, "peer sent no certificates"),
    ("expired", "certificate expired"),
    ("rogue-client", "UnknownIssuer"),
], ids=["no-certificate", "expired", "untrusted-ca"])
def test_mutual_tls_refuses_a_client_without_a_valid_certificate(pki, tern_with, certificate,
                                                                  reason):
    port = free_port()
    broker = tern_with(mtls_config(pki, port))
    identity = ["--cafile", pki.path("ca")]
    if certificate is not None:
        identity += ["--cert", pki.path(certificate), "--key", pki.key(certificate)]
    refused = cli_pub(port, *identity)
    assert refused.returncode != 0, f"accepted: {refused}"
    # Refused by the broker's handshake, for that reason.
    line = broker.wait_for_log("TLS handshake failed")
    assert reason in line and "listener=mtls" in line, line
    # The same broker accepts a client with a valid certificate.
    accepted = cli_pub(port, "--cafile", pki.path("ca"), "--cert", pki.path("client"),
                       "--key", pki.key("client"))
    assert accepted.returncode == 0, accepted.stderr


def test_paho_over_mutual_tls(pki, tern_with):
    port = free_port()
    broker = tern_with(mtls_config(pki, port))
    tls = {"ca_certs": pki.path("ca"), "certfile": pki.path("client"),
           "keyfile": pki.key("client")}
    client = Client(broker, "paho-mtls", V5, port=port, tls=tls)
    try:
        client.connect()
        client.subscribe("m/t", qos=1)
        client.publish("m/t", b"x", qos=1)
        assert client.get().payload == b"x"
    finally:
        client.close()


# -- WebSocket ------------------------------------------------------------

def test_paho_over_websocket_and_secure_websocket(pki, tern_with, version):
    ws_port, wss_port = free_port(), free_port()
    config = (listener("ws", ws_port, "web")
              + listener("wss", wss_port, "web-secure", cert=pki.path("server"),
                         key=pki.key("server"), ws_path="/mqtt-secure"))
    broker = tern_with(config)
    web = Client(broker, "over-ws", version, port=ws_port, transport="websockets",
                 ws_path="/mqtt")
    secure = Client(broker, "over-wss", version, port=wss_port, transport="websockets",
                    ws_path="/mqtt-secure", tls={"ca_certs": pki.path("ca")})
    try:
        web.connect()
        secure.connect()
        web.subscribe("ws/#", qos=1)
        secure.subscribe("ws/#", qos=1)
        # Larger than one WebSocket frame of paho's and than one read.
        big = bytes(range(256)) * 800
        secure.publish("ws/big", big, qos=1)
        web.publish("ws/small", b"s", qos=1)
        for client in (web, secure):
            received = {m.topic: m.payload for m in client.expect(2)}
            assert received == {"ws/big": big, "ws/small": b"s"}
    finally:
        web.close()
        secure.close()


def _upgrade_status(port: int, path: str, protocol: str = "mqtt") -> str:
    request = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n")
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                break
            response += chunk
    return response.decode(errors="replace")


def test_websocket_upgrade_checks_the_path_and_negotiates_the_subprotocol(tern_with):
    port = free_port()
    tern_with(listener("ws", port, "web"))
    accepted = _upgrade_status(port, "/mqtt", "mqttv3.1, mqtt")
    assert accepted.startswith("HTTP/1.1 101"), accepted
    assert "sec-websocket-protocol: mqttv3.1" in accepted.lower(), accepted
    assert _upgrade_status(port, "/other").startswith("HTTP/1.1 404")
    assert _upgrade_status(port, "/mqtt", "chat").startswith("HTTP/1.1 400")


def _anonymous_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))


def _idle_websocket_client(port: int, client_id: str) -> socket.socket:
    """A WebSocket connection that has sent CONNECT and received its CONNACK."""
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(("GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the upgrade: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    packet = raw.connect(client_id)
    mask = b"\x11\x22\x33\x44"
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(packet))
    sock.sendall(bytes([0x82, 0x80 | len(packet)]) + mask + masked)
    frame = b""
    while len(frame) < 6:
        chunk = sock.recv(6 - len(frame))
        assert chunk, f"closed before CONNACK: {frame!r}"
        frame += chunk
    assert frame[:3] == b"\x82\x04\x20" and frame[5] == 0, frame
    return sock


def test_idle_websocket_clients_hold_little_memory(tern_with):
    # tungstenite's default receive buffer, 128 KiB per connection filled
    # with zeros before the first read, made each idle WebSocket client
    # cost the broker 136 KiB here; with 4 KiB it costs about 24 KiB at
    # this count (the broker's fixed allocations spread over few clients),
    # 8 KiB at 10,000 (docs/performance.md, "Idle WebSocket connections").
    port = free_port()
    broker = tern_with(listener("ws", port, "web"))
    _idle_websocket_client(port, "warm-up").close()
    before = _anonymous_kib(broker.process.pid)
    clients = [_idle_websocket_client(port, f"idle-ws-{index}") for index in range(200)]
    try:
        per_client_kib = (_anonymous_kib(broker.process.pid) - before) / len(clients)
        assert per_client_kib < 48, f"{per_client_kib:.1f} KiB per idle WebSocket client"
    finally:
        for client in clients:
            client.close()


# -- PROXY protocol ---------------------------------------------------------

def _connect_line(broker: Broker, client_id: str) -> str:
    return broker.wait_for_log(f'client_id="{client_id}"')


def test_proxy_protocol_v1_and_v2_give_the_client_address(tern_with):
    port = free_port()
    broker = tern_with(listener("tcp", port, "behind-lb", proxy_protocol=True))
    v1 = raw.RawClient(HOST, port)
    v1.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n")
    assert v1.connect("via-v1").reason == 0
    assert "peer=203.0.113.7:51234" in _connect_line(broker, "via-v1")

    addresses = (socket.inet_pton(socket.AF_INET6, "2001:db8::7")
                 + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 4000, 8883))
    header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21]) + struct.pack("!H", len(addresses))
    v2 = raw.RawClient(HOST, port)
    v2.send(header + addresses)
    assert v2.connect("via-v2").reason == 0
    assert "peer=[2001:db8::7]:4000" in _connect_line(broker, "via-v2")

    # Without a header: refused, with a line that says why and what to do.
    direct = raw.RawClient(HOST, port)
    direct.send(raw.connect("direct"))
    direct.wait_closed()
    line = broker.wait_for_log("no PROXY protocol header")
    assert "behind-lb" in line and "proxy_protocol" in line, line
    for client in (v1, v2, direct):
        client.close()


def test_proxy_protocol_header_comes_before_the_tls_handshake(pki, tern_with):
    port = free_port()
    broker = tern_with(listener("tls", port, "tls-behind-lb", cert=pki.path("server"),
                                key=pki.key("server"), proxy_protocol=True))
    addresses = socket.inet_aton("198.51.100.9") + socket.inet_aton("10.0.0.1")
    addresses += struct.pack("!HH", 40000, 8883)
    header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses))
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(header + addresses)
        with tls_context(pki).wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(raw.connect("tls-proxied"))
            connack = tls.recv(4)
            assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", connack
            assert "peer=198.51.100.9:40000" in _connect_line(broker, "tls-proxied")


def test_a_listener_without_proxy_protocol_reports_the_socket_address(broker):
    client = raw.RawClient(HOST, broker.port)
    local_port = client.sock.getsockname()[1]
    assert client.connect("direct").reason == 0
    assert f"peer=127.0.0.1:{local_port}" in _connect_line(broker, "direct")
    # A PROXY header there is not trusted: it is not MQTT, so it closes.
    # ("PR" reads as the fixed header of an 82-byte PUBREC: pad it whole.)
    spoofer = raw.RawClient(HOST, broker.port)
    header = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n" + raw.connect("spoofer")
    spoofer.send(header.ljust(84, b"\x00"))
    spoofer.wait_closed()
    assert "203.0.113.7" not in broker.log()
    client.close()
    spoofer.close()


# -- certificate reload -----------------------------------------------------

def test_sighup_reloads_the_certificate_and_keeps_connections(pki, tern_with, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    (live / "server.pem").write_bytes(Path(pki.path("server")).read_bytes())
    (live / "server.key").write_bytes(Path(pki.key("server")).read_bytes())
    port = free_port()
    broker = tern_with(listener("tls", port, "secure", cert=live / "server.pem",
                                key=live / "server.key"))
    before = server_fingerprint(pki, port)
    assert before == file_fingerprint(pki, "server")
    old = Client(broker, "before-reload", V311, port=port, tls={"ca_certs": pki.path("ca")})
    try:
        old.connect()
        old.subscribe("reload/#", qos=1)

        # A new certificate and key at the same paths, then SIGHUP.
        pki.server("renewed")
        (live / "server.pem").write_bytes(Path(pki.path("renewed")).read_bytes())
        (live / "server.key").write_bytes(Path(pki.key("renewed")).read_bytes())
        mark = len(broker.log())
        broker.signal(signal.SIGHUP)
        broker.wait_for_log("TLS certificates reloaded", after=mark)
        after = server_fingerprint(pki, port)
        assert after == file_fingerprint(pki, "renewed") != before

        # The connection made before the reload still works.
        pub(broker, "reload/x", "still here", qos=1)
        assert old.get().payload == b"still here"

        # A broken key: the reload fails loudly and the certificate stays.
        (live / "server.key").write_text("not a key\n")
        mark = len(broker.log())
        broker.signal(signal.SIGHUP)
        line = broker.wait_for_log("not reloaded", after=mark)
        assert "secure" in line and "key" in line, line
        assert server_fingerprint(pki, port) == after
        assert broker.running
    finally:
        old.close()


# -- limits and configuration errors ----------------------------------------

def test_a_listener_max_connections_closes_the_connections_beyond_it(tern_with):
    port = free_port()
    broker = tern_with(listener("tcp", port, "small", max_connections=2))
    first, second = raw.RawClient(HOST, port), raw.RawClient(HOST, port)
    assert first.connect("first").reason == 0
    assert second.connect("second").reason == 0
    third = raw.RawClient(HOST, port)
    assert third.wait_closed() == [], "closed before any packet"
    broker.wait_for_log("the listener's max_connections reached")
    # The broker's other listener is not limited by it.
    other = raw.RawClient(HOST, broker.port)
    assert other.connect("other").reason == 0
    for client in (first, second, third, other):
        client.close()


@pytest.mark.parametrize("breakage,expected", [
    ("missing-cert", 'cert = "{dir}/missing.pem" cannot be read'),
    ("key-mismatch", "does not match the certificate"),
    ("no-ca", "require_client_cert is true but ca is missing"),
])
def test_a_bad_tls_listener_stops_the_start_with_a_clear_error(pki, tmp_path, breakage, expected):
    settings = {"cert": pki.path("server"), "key": pki.key("server")}
    if breakage == "missing-cert":
        settings["cert"] = f"{pki.dir}/missing.pem"
    elif breakage == "key-mismatch":
        settings["key"] = pki.key("client")
    else:
        settings["require_client_cert"] = True
    config = tmp_path / "tern.toml"
    config.write_text(listener("tls", free_port(), "secure", **settings))
    result = subprocess.run([tern_binary(), "serve", "--in-memory", "--config", str(config)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert 'listener "secure"' in result.stderr, result.stderr
    assert expected.format(dir=pki.dir) in result.stderr, result.stderr
