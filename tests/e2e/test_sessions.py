"""Persistent sessions: 3.1.1 Clean Session 0, 5.0 Clean Start 0 with a
Session Expiry Interval (sections 3.1.2.4, 3.1.2.11.2, 4.1 and 4.4)."""

import time

from harness import raw as wire
from harness.clients import V5


def persistent(version, expiry=300):
    return {"clean": False, "session_expiry": expiry} if version == V5 else {"clean": False}


def offline_subscriber(mqtt, version, topic="sess/queue", client_id="sleeper", **session):
    """A client that subscribes at QoS 2 with a lasting session, then leaves."""
    client = mqtt(client_id, version, **(session or persistent(version)))
    client.subscribe(topic, 2)
    client.disconnect()


def publish_each_qos(mqtt, version, topic="sess/queue"):
    pub = mqtt("publisher", version)
    for qos in (0, 1, 2):
        pub.publish(topic, f"qos{qos}".encode(), qos=qos)
    pub.disconnect()


def assert_queued_messages_arrive(client):
    """QoS 1 and 2 must arrive, QoS 0 may; each once. A broker may deliver
    the queued messages in several turns, so everything arriving within a
    short window counts; a duplicate would arrive within it too."""
    received = [m.payload for m in client.expect(2)]
    received += [m.payload for m in client.collect(within=1.0)]
    assert sorted(set(received)) == sorted(received), f"duplicates: {received}"
    assert {b"qos1", b"qos2"} <= set(received) <= {b"qos0", b"qos1", b"qos2"}, received


def test_messages_published_while_offline_are_delivered_on_reconnect(mqtt, version):
    offline_subscriber(mqtt, version)
    publish_each_qos(mqtt, version)
    back = mqtt("sleeper", version, **persistent(version))
    assert back.connack.session_present
    assert_queued_messages_arrive(back)


def test_queued_messages_keep_their_order(mqtt, version):
    offline_subscriber(mqtt, version)
    pub = mqtt("publisher", version)
    for i in range(20):
        pub.publish("sess/queue", str(i).encode(), qos=1)
    back = mqtt("sleeper", version, **persistent(version))
    assert [int(m.payload) for m in back.expect(20)] == list(range(20))


def test_queued_messages_survive_a_broker_restart(broker, mqtt, version):
    offline_subscriber(mqtt, version)
    publish_each_qos(mqtt, version)
    broker.restart()
    back = mqtt("sleeper", version, **persistent(version))
    assert back.connack.session_present
    assert_queued_messages_arrive(back)


def test_subscriptions_survive_a_broker_restart(broker, mqtt, version):
    offline_subscriber(mqtt, version)
    broker.restart()
    back = mqtt("sleeper", version, **persistent(version))
    assert back.connack.session_present
    mqtt("publisher", version).publish("sess/queue", b"after restart", qos=1)
    assert back.get().payload == b"after restart"


def test_clean_session_reconnect_discards_the_session(mqtt, version):
    offline_subscriber(mqtt, version)
    publish_each_qos(mqtt, version)
    back = mqtt("sleeper", version, clean=True)
    assert not back.connack.session_present
    back.subscribe("sess/sentinel", 1)
    pub = mqtt("publisher2", version)
    pub.publish("sess/queue", b"to a dropped subscription", qos=1)
    pub.publish("sess/sentinel", b"end", qos=1)
    assert [m.topic for m in back.until("sess/sentinel")] == ["sess/sentinel"]


def test_unacknowledged_message_is_resent_with_dup_on_reconnect(broker, mqtt, raw, version):
    props = {wire.SESSION_EXPIRY_INTERVAL: 300} if version == V5 else None
    first = raw(version)
    assert first.connect("forgetful", clean=False, props=props).reason == 0
    first.send(wire.subscribe(1, [("sess/dup", 1)], version=version))
    first.expect(wire.SUBACK)
    mqtt("publisher", version).publish("sess/dup", b"ack me", qos=1)
    original = first.expect(wire.PUBLISH)
    assert original.publish_fields()[2] == b"ack me"
    first.close()  # without PUBACK

    second = raw(version)
    connack = second.connect("forgetful", clean=False, props=props)
    assert connack.session_present
    again = second.expect(wire.PUBLISH)
    topic, packet_id, payload = again.publish_fields()
    assert (topic, payload) == ("sess/dup", b"ack me")
    assert again.flags & 0x08, "re-sent PUBLISH without the DUP flag [MQTT-3.3.1-1]"
    second.send(wire.puback(packet_id))


# -- MQTT 5 session expiry ------------------------------------------------

def test_v5_session_expiry_zero_ends_the_session_at_disconnect(mqtt):
    offline_subscriber(mqtt, V5, clean=False, session_expiry=0)
    back = mqtt("sleeper", V5, clean=False, session_expiry=300)
    assert not back.connack.session_present


def test_v5_session_expires_after_its_interval(mqtt):
    offline_subscriber(mqtt, V5, clean=False, session_expiry=1)
    publish_each_qos(mqtt, V5)
    time.sleep(2.2)
    back = mqtt("sleeper", V5, clean=False, session_expiry=300)
    assert not back.connack.session_present
    back.assert_no_message(within=0.3)


def test_v5_session_is_kept_within_its_interval(mqtt):
    offline_subscriber(mqtt, V5, clean=False, session_expiry=4)
    publish_each_qos(mqtt, V5)
    time.sleep(1)
    back = mqtt("sleeper", V5, clean=False, session_expiry=300)
    assert back.connack.session_present
    assert_queued_messages_arrive(back)
