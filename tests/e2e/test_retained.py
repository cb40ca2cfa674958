"""Retained messages (3.1.1 section 3.3.1.3; 5.0 sections 3.3.1.3 and 3.8.3.1)."""

import pytest

from harness.clients import V5


def retained_on(mqtt, version, topic_filter, client_id="late", **options):
    """What a new subscriber to `topic_filter` receives before a sentinel."""
    sub = mqtt(client_id, version)
    sub.subscribe(topic_filter, 1, **options)
    sub.subscribe("retain-sentinel", 1)
    mqtt(f"{client_id}-sentinel", version).publish("retain-sentinel", b"", qos=1)
    return [m for m in sub.until("retain-sentinel") if m.topic != "retain-sentinel"]


def test_late_subscriber_receives_the_retained_message_with_the_retain_flag(mqtt, version):
    mqtt("pub", version).publish("retain/set", b"kept", qos=1, retain=True)
    (message,) = retained_on(mqtt, version, "retain/set")
    assert (message.payload, message.retain, message.qos) == (b"kept", True, 1)


def test_retained_message_is_delivered_at_the_minimum_qos(mqtt, version):
    mqtt("pub", version).publish("retain/qos", b"kept", qos=2, retain=True)
    sub = mqtt("late", version)
    sub.subscribe("retain/qos", 1)
    message = sub.get()
    assert (message.payload, message.retain, message.qos) == (b"kept", True, 1)


def test_a_new_retained_message_replaces_the_old_one(mqtt, version):
    pub = mqtt("pub", version)
    pub.publish("retain/replace", b"old", qos=1, retain=True)
    pub.publish("retain/replace", b"new", qos=1, retain=True)
    assert [m.payload for m in retained_on(mqtt, version, "retain/replace")] == [b"new"]


def test_an_empty_retained_payload_clears_the_retained_message(mqtt, version):
    pub = mqtt("pub", version)
    pub.publish("retain/clear", b"soon gone", qos=1, retain=True)
    pub.publish("retain/clear", b"", qos=1, retain=True)
    assert retained_on(mqtt, version, "retain/clear") == []


def test_a_non_retained_publish_leaves_the_retained_message_alone(mqtt, version):
    pub = mqtt("pub", version)
    pub.publish("retain/keep", b"retained", qos=1, retain=True)
    pub.publish("retain/keep", b"passing", qos=1, retain=False)
    assert [m.payload for m in retained_on(mqtt, version, "retain/keep")] == [b"retained"]


def test_a_wildcard_subscription_receives_every_matching_retained_message(mqtt, version):
    pub = mqtt("pub", version)
    for name in ("a", "b", "c/d"):
        pub.publish(f"retain/many/{name}", name.encode(), qos=1, retain=True)
    pub.publish("retain/other", b"no", qos=1, retain=True)
    received = retained_on(mqtt, version, "retain/many/#")
    assert sorted(m.topic for m in received) == ["retain/many/a", "retain/many/b", "retain/many/c/d"]
    assert all(m.retain for m in received)


def test_an_established_subscriber_gets_a_retained_publish_without_the_flag(mqtt, version):
    # 3.1.1 [MQTT-3.3.1-9]; 5.0 with Retain As Published 0 [MQTT-3.3.1-12].
    sub = mqtt("live", version)
    sub.subscribe("retain/live", 1)
    mqtt("pub", version).publish("retain/live", b"now", qos=1, retain=True)
    message = sub.get()
    assert (message.payload, message.retain) == (b"now", False)


def test_retained_message_survives_a_broker_restart(broker, mqtt, version):
    mqtt("pub", version).publish("retain/durable", b"persisted", qos=1, retain=True)
    broker.restart()
    (message,) = retained_on(mqtt, version, "retain/durable")
    assert (message.payload, message.retain) == (b"persisted", True)


# -- MQTT 5 subscription options ------------------------------------------

def test_v5_retain_as_published_keeps_the_retain_flag(mqtt):
    sub = mqtt("rap", V5)
    sub.subscribe("retain/rap", 1, retain_as_published=True)
    pub = mqtt("pub", V5)
    pub.publish("retain/rap", b"retained", qos=1, retain=True)
    pub.publish("retain/rap", b"plain", qos=1, retain=False)
    first, second = sub.expect(2)
    assert (first.payload, first.retain) == (b"retained", True)
    assert (second.payload, second.retain) == (b"plain", False)


@pytest.mark.parametrize("handling,on_first,on_repeat", [(0, 1, 1), (1, 1, 0), (2, 0, 0)])
def test_v5_retain_handling(mqtt, handling, on_first, on_repeat):
    mqtt("pub", V5).publish("retain/handling", b"r", qos=1, retain=True)
    sub = mqtt("handler", V5)
    sub.subscribe("retain-sentinel", 1)
    sentinel = mqtt("sentinel", V5)

    counts = []
    for _ in range(2):  # a new subscription, then the same one again
        sub.subscribe("retain/handling", 1, retain_handling=handling)
        sentinel.publish("retain-sentinel", b"", qos=1)
        counts.append(sum(m.topic == "retain/handling" for m in sub.until("retain-sentinel")))
    assert counts == [on_first, on_repeat]
