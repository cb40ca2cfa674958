"""PUBLISH and SUBSCRIBE at QoS 0, 1 and 2, between paho and Debian's
mosquitto_pub / mosquitto_sub clients (sections 3.3, 3.8, 4.3 and 4.6)."""

import pytest

from harness import cli

QOS = [0, 1, 2]


@pytest.mark.parametrize("qos", QOS)
def test_message_arrives_at_the_qos_it_was_published_with(mqtt, version, qos):
    sub = mqtt("sub", version)
    assert sub.subscribe("deliver/q", 2) == 2
    pub = mqtt("pub", version)
    pub.publish("deliver/q", b"payload \x00\xff bytes", qos=qos)

    message = sub.get()
    assert (message.topic, message.payload, message.qos) == ("deliver/q", b"payload \x00\xff bytes", qos)
    assert not message.retain


@pytest.mark.parametrize("sub_qos", QOS)
@pytest.mark.parametrize("pub_qos", QOS)
def test_delivered_qos_is_the_minimum_of_subscription_and_message(mqtt, version, sub_qos, pub_qos):
    sub = mqtt("sub", version)
    assert sub.subscribe("grant/q", sub_qos) == sub_qos
    mqtt("pub", version).publish("grant/q", b"m", qos=pub_qos)
    assert sub.get().qos == min(sub_qos, pub_qos)


def test_qos1_messages_from_one_publisher_arrive_in_order(mqtt, version):
    sub = mqtt("sub", version)
    sub.subscribe("order/q1", 1)
    pub = mqtt("pub", version)
    infos = [pub.publish("order/q1", str(i).encode(), qos=1, wait=False) for i in range(200)]
    for info in infos:
        info.wait_for_publish(5)

    received = [int(m.payload) for m in sub.expect(200, timeout=10)]
    assert received == list(range(200))


def test_qos2_messages_arrive_exactly_once(mqtt, version):
    sub = mqtt("sub", version)
    sub.subscribe("once/q2", 2)
    pub = mqtt("pub", version)
    infos = [pub.publish("once/q2", str(i).encode(), qos=2, wait=False) for i in range(100)]
    for info in infos:
        info.wait_for_publish(5)

    received = [int(m.payload) for m in sub.expect(100, timeout=10)]
    assert received == list(range(100))
    sub.assert_no_message(within=0.5)


def test_every_matching_subscriber_gets_a_copy(mqtt, version):
    subs = [mqtt(f"fan-{i}", version) for i in range(3)]
    for sub in subs:
        sub.subscribe("fan/out", 1)
    mqtt("pub", version).publish("fan/out", b"all", qos=1)
    for sub in subs:
        assert sub.get().payload == b"all"


def test_unsubscribe_stops_delivery(mqtt, version):
    sub = mqtt("sub", version)
    sub.subscribe("unsub/a", 1)
    sub.subscribe("unsub/sentinel", 1)
    sub.unsubscribe("unsub/a")
    pub = mqtt("pub", version)
    pub.publish("unsub/a", b"gone", qos=1)
    pub.publish("unsub/sentinel", b"end", qos=1)
    assert [m.topic for m in sub.until("unsub/sentinel")] == ["unsub/sentinel"]


def test_a_client_receives_its_own_messages_by_default(mqtt, version):
    client = mqtt("echo", version)
    client.subscribe("self/echo", 1)
    client.publish("self/echo", b"me", qos=1)
    assert client.get().payload == b"me"


# -- with Debian's mosquitto_pub and mosquitto_sub ------------------------

@pytest.mark.parametrize("qos", QOS)
def test_mosquitto_pub_reaches_a_paho_subscriber(broker, mqtt, version, qos):
    sub = mqtt("paho-sub", version)
    sub.subscribe("cli/in", 2)
    cli.pub(broker, "cli/in", "from mosquitto_pub", qos=qos, version=version)
    message = sub.get()
    assert (message.payload, message.qos) == (b"from mosquitto_pub", qos)


@pytest.mark.parametrize("qos", QOS)
def test_paho_publisher_reaches_mosquitto_sub(cli_sub, mqtt, version, qos):
    sub = cli_sub(["cli/out/#"], qos=2, version=version)
    mqtt("paho-pub", version).publish("cli/out/x", "from paho", qos=qos)
    (message,) = sub.expect(1)
    assert (message.topic, message.payload, message.qos) == ("cli/out/x", "from paho", qos)


@pytest.mark.parametrize("qos", QOS)
def test_mosquitto_pub_reaches_mosquitto_sub_with_the_granted_qos(broker, cli_sub, version, qos):
    sub = cli_sub(["cli/both"], qos=1, version=version)
    cli.pub(broker, "cli/both", "cli to cli", qos=qos, version=version)
    (message,) = sub.expect(1)
    assert (message.payload, message.qos) == ("cli to cli", min(qos, 1))
