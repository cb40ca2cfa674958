"""Authentication, authorization and their reload, against a real `tern serve`
with a password file (written by `tern passwd` and by Mosquitto's
`mosquitto_passwd`) and an ACL file; anonymous access decided per listener.

Tern only: the files use Tern's ACL extensions and SCRAM-SHA-256, which
Mosquitto does not have.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
import time

import pytest

from harness import cli
from harness import raw as wire
from harness.broker import Broker, broker_kind, free_port, tern_binary
from harness.clients import V5, V311, Client

pytestmark = pytest.mark.skipif(broker_kind() != "tern", reason="Tern's auth features")

ACL = """\
# anonymous clients: none (allow_anonymous is false)
user alice
topic readwrite alice/#
topic read shared/#
topic deny read shared/secret
topic read $SYS/#

user bob
topic write shared/#
topic write alice/inbox
topic read bob/#

client sensor-7
topic write sensors/7/#

pattern readwrite users/%u/#
pattern write clients/%c/status
"""


def tern_passwd(*args: str, password: str | None = None) -> None:
    command = [tern_binary(), "passwd", *args]
    if password is not None:
        command += ["--stdin"]
    subprocess.run(command, input=(password or "") + "\n", text=True, check=True,
                   capture_output=True, timeout=30)


@pytest.fixture
def secured(tmp_path):
    """A broker with a password file (alice, bob by `tern passwd`; carol by
    mosquitto_passwd) and the ACL above."""
    passwords = tmp_path / "passwd"
    tern_passwd("-c", str(passwords), "alice", password="alice-pw")
    tern_passwd(str(passwords), "bob", password="bob-pw")
    if shutil.which("mosquitto_passwd"):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), "carol", "carol-pw"],
                       check=True, capture_output=True, timeout=30)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    config = (f'password_file = "{passwords}"\nacl_file = "{acl}"\n'
              "sys_interval = 1\n")
    broker = Broker("tern", tmp_path, config=config)
    try:
        broker.start_fresh()
        yield broker
    finally:
        broker.cleanup()


@pytest.fixture
def clients(secured):
    created: list[Client] = []

    def make(client_id: str, user: str | None, password: str | None, version: int = V5,
             *, expect_success: bool = True) -> Client:
        client = Client(secured, client_id, version, username=user, password=password)
        created.append(client)
        client.connect(expect_success=expect_success)
        return client

    yield make
    for client in created:
        client.close()


def raw_client(broker, version=V5) -> wire.RawClient:
    return wire.RawClient(broker.host, broker.port, version=version)


# -- authentication ---------------------------------------------------------

@pytest.mark.parametrize("version,bad,anonymous", [(V311, 4, 5), (V5, 0x86, 0x87)])
def test_credentials_decide_who_connects(secured, version, bad, anonymous):
    """The CONNACK bytes on the wire (paho maps 3.1.1 return codes to MQTT 5 ones)."""
    cases = [("alice", b"alice-pw", 0), ("alice", b"nope", bad), ("alice", None, bad),
             ("mallory", b"alice-pw", bad), (None, None, anonymous)]
    for user, password, expected in cases:
        client = raw_client(secured, version)
        try:
            connack = client.connect("a1", username=user, password=password)
            assert connack.reason == expected, (user, password, connack)
        finally:
            client.close()


@pytest.mark.parametrize("broker_wide,on_listener", [(False, True), (True, False)])
def test_anonymous_access_is_decided_per_listener(tmp_path, broker_wide, on_listener):
    """The plain `--listen` address follows the broker-wide allow_anonymous;
    a [[listener]] table with its own allow_anonymous overrides it for its
    connections. Named users need their password on both."""
    passwords = tmp_path / "passwd"
    tern_passwd("-c", str(passwords), "alice", password="alice-pw")
    table_port = free_port()
    flag = {True: "true", False: "false"}
    config = (f'password_file = "{passwords}"\n'
              f"allow_anonymous = {flag[broker_wide]}\n"
              "[[listener]]\n"
              f'bind = "127.0.0.1:{table_port}"\n'
              'name = "table"\n'
              f"allow_anonymous = {flag[on_listener]}\n")
    broker = Broker("tern", tmp_path, config=config)
    try:
        broker.start_fresh()
        ports = {broker.port: broker_wide, table_port: on_listener}
        for version, refused in [(V311, 5), (V5, 0x87)]:
            for port, allowed in ports.items():
                for user, password, expected in [(None, None, 0 if allowed else refused),
                                                 ("alice", b"alice-pw", 0),
                                                 ("alice", b"nope", 4 if version == V311 else 0x86)]:
                    client = wire.RawClient(broker.host, port, version=version)
                    try:
                        connack = client.connect("anon-1", username=user, password=password)
                        assert connack.reason == expected, (version, port, user, connack)
                    finally:
                        client.close()
    finally:
        broker.cleanup()


def test_mosquitto_passwd_files_work(secured, clients):
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto)")
    assert clients("c1", "carol", "carol-pw").connack.reason_code == 0
    assert clients("c2", "carol", "x", expect_success=False).connack.reason_code == 0x86


def test_mosquitto_clients_with_credentials(secured):
    """mosquitto_sub and mosquitto_pub with -u/-P; a wrong password makes
    mosquitto_pub fail with the broker's answer."""
    sub = cli.Sub(secured, ["alice/#"], qos=1, client_id="cli-alice",
                  extra=["-u", "alice", "-P", "alice-pw"])
    try:
        sub.wait_subscribed()
        cli.pub(secured, "alice/inbox", "hello", qos=1, client_id="cli-bob",
                extra=["-u", "bob", "-P", "bob-pw"])
        assert [m.payload for m in sub.expect(1)] == ["hello"]
    finally:
        sub.close()
    command = ["mosquitto_pub", "-h", secured.host, "-p", str(secured.port), "-V", "mqttv5",
               "-u", "bob", "-P", "wrong", "-t", "alice/inbox", "-m", "x"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert "bad user name or password" in (result.stdout + result.stderr).lower(), result


# -- authorization ----------------------------------------------------------

def publish_qos1(client: wire.RawClient, topic: str, packet_id: int) -> int:
    """PUBACK reason of a QoS 1 publish over the raw client."""
    client.send(wire.publish(topic, b"x", version=client.version, qos=1, packet_id=packet_id))
    return client.expect(wire.PUBACK).reason


def raw_login(broker, user, password, client_id, version=V5) -> wire.RawClient:
    client = raw_client(broker, version)
    connack = client.connect(client_id, username=user, password=password.encode())
    assert connack.reason == 0, connack
    return client


def test_publish_denied_is_told_to_v5_and_not_routed(secured, clients):
    alice = clients("alice-sub", "alice", "alice-pw")
    assert alice.subscribe("alice/#", 1) == 1
    bob = raw_login(secured, "bob", "bob-pw", "bob-pub")
    assert publish_qos1(bob, "alice/private", 1) == 0x87
    assert publish_qos1(bob, "alice/inbox", 2) == 0
    assert [m.topic for m in alice.expect(1)] == ["alice/inbox"]
    alice.assert_no_message()
    # MQTT 3.1.1 cannot be told: acknowledged (as Mosquitto does), not routed.
    old = raw_login(secured, "bob", "bob-pw", "bob-old", version=V311)
    assert publish_qos1(old, "alice/private", 3) == 0
    assert publish_qos1(old, "alice/inbox", 4) == 0
    assert [m.topic for m in alice.expect(1)] == ["alice/inbox"]
    alice.assert_no_message()


@pytest.mark.parametrize("version,refused", [(V311, 0x80), (V5, 0x87)])
def test_subscribe_denied(clients, version, refused):
    bob = clients("bob-sub", "bob", "bob-pw", version)
    assert bob.subscribe("bob/+", 1) == 1
    assert bob.subscribe("alice/#", 1) == refused
    assert bob.subscribe("#", 0) == refused


def test_read_permission_is_checked_on_delivery(clients):
    alice = clients("alice-r", "alice", "alice-pw")
    assert alice.subscribe("shared/#", 1) == 1
    bob = clients("bob-w", "bob", "bob-pw")
    for topic in ("shared/secret", "shared/news", "shared/secret", "shared/end"):
        bob.publish(topic, b"m", qos=1)
    assert [m.topic for m in alice.until("shared/end")] == ["shared/news", "shared/end"]


def test_user_and_client_patterns(secured, clients):
    bob = clients("bob-p", "bob", "bob-pw")
    assert bob.subscribe("users/bob/#", 1) == 1
    assert bob.subscribe("users/alice/#", 1) == 0x87
    bob.publish("users/bob/note", b"n", qos=1)
    assert bob.get().topic == "users/bob/note"
    sensor = raw_login(secured, "bob", "bob-pw", "sensor-7")
    assert publish_qos1(sensor, "sensors/7/temp", 1) == 0x10  # allowed, nobody listens
    assert publish_qos1(sensor, "sensors/8/temp", 2) == 0x87
    assert publish_qos1(sensor, "clients/sensor-7/status", 3) == 0x10
    assert publish_qos1(sensor, "clients/other/status", 4) == 0x87


def test_denials_are_counted_in_sys(secured, clients):
    alice = clients("alice-sys", "alice", "alice-pw")
    bob = raw_login(secured, "bob", "bob-pw", "bob-sys")
    assert publish_qos1(bob, "nowhere", 1) == 0x87
    assert alice.subscribe("$SYS/broker/denied/publish", 0) == 0
    deadline = time.monotonic() + 5
    while True:
        message = alice.get(max(deadline - time.monotonic(), 0.1))
        if int(message.payload) >= 1:
            break


# -- reload -----------------------------------------------------------------

def wait_for_log(broker, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in broker.log():
        assert time.monotonic() < deadline, f"{text!r} not in the broker log"
        time.sleep(0.05)


def test_sighup_reloads_passwords_and_acl(secured, clients, tmp_path):
    bob = raw_login(secured, "bob", "bob-pw", "bob-reload")
    assert publish_qos1(bob, "bob/own", 1) == 0x87
    tern_passwd(str(tmp_path / "passwd"), "alice", password="new-pw")
    (tmp_path / "acl").write_text(ACL + "\nuser bob\ntopic write bob/#\n")
    secured.reload()
    wait_for_log(secured, "password and ACL files reloaded")
    # The connected client follows the new rules at its next packet.
    assert publish_qos1(bob, "bob/own", 2) == 0x10
    assert clients("r1", "alice", "alice-pw", expect_success=False).connack.reason_code == 0x86
    assert clients("r2", "alice", "new-pw").connack.reason_code == 0

    # A broken file is refused with its line, and the rules stay.
    (tmp_path / "acl").write_text("user bob\ntopic read,wirte bob/#\n")
    secured.reload()
    wait_for_log(secured, "reload failed")
    assert "acl:2:" in secured.log()
    assert publish_qos1(bob, "bob/own", 3) == 0x10


# -- SCRAM-SHA-256 ------------------------------------------------------------

class Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802/7677), written for the test."""

    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
        assert fields["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(),
                                     base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.expected = b"v=" + base64.b64encode(
            hmac.new(server_key, auth_message, "sha256").digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def scram_connect(broker, user: str, password: str, method: str = "SCRAM-SHA-256"):
    """Runs the exchange; returns (CONNACK, the Scram client, raw client)."""
    client = raw_client(broker)
    scram = Scram(user, password)
    client.send(wire.connect(f"scram-{user}", version=5, props={
        wire.AUTHENTICATION_METHOD: method, wire.AUTHENTICATION_DATA: scram.client_first()}))
    first = client.read()
    if first.kind == wire.CONNACK:
        return first, scram, client
    assert first.kind == wire.AUTH and first.reason == 0x18, first
    assert first.props[wire.AUTHENTICATION_METHOD] == b"SCRAM-SHA-256"
    final = scram.client_final(first.props[wire.AUTHENTICATION_DATA])
    client.send(wire.auth(0x18, {wire.AUTHENTICATION_METHOD: "SCRAM-SHA-256",
                                 wire.AUTHENTICATION_DATA: final}))
    return client.expect(wire.CONNACK), scram, client


def test_scram_sha_256_enhanced_authentication(secured):
    connack, scram, client = scram_connect(secured, "alice", "alice-pw")
    assert connack.reason == 0, connack
    assert connack.props[wire.AUTHENTICATION_DATA] == scram.expected, "server signature"
    # The authenticated user's ACL applies.
    assert publish_qos1(client, "alice/x", 1) == 0x10
    assert publish_qos1(client, "bob/x", 2) == 0x87
    # Re-authentication (MQTT 5 §4.12.1) on the same connection.
    again = Scram("alice", "alice-pw")
    client.send(wire.auth(0x19, {wire.AUTHENTICATION_METHOD: "SCRAM-SHA-256",
                                 wire.AUTHENTICATION_DATA: again.client_first()}))
    first = client.expect(wire.AUTH)
    assert first.reason == 0x18, first
    final = again.client_final(first.props[wire.AUTHENTICATION_DATA])
    client.send(wire.auth(0x18, {wire.AUTHENTICATION_METHOD: "SCRAM-SHA-256",
                                 wire.AUTHENTICATION_DATA: final}))
    done = client.expect(wire.AUTH)
    assert done.reason == 0 and done.props[wire.AUTHENTICATION_DATA] == again.expected
    assert publish_qos1(client, "alice/y", 3) == 0x10
    client.close()

    connack, _, client = scram_connect(secured, "alice", "wrong")
    assert connack.reason == 0x86
    client.close()
    connack, _, client = scram_connect(secured, "nobody", "x")
    assert connack.reason == 0x86
    client.close()
    connack, _, client = scram_connect(secured, "alice", "alice-pw", method="PLAIN-TEXT")
    assert connack.reason == 0x8C
    client.close()
