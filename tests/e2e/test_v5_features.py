"""MQTT 5 features: message expiry, topic aliases, subscription identifiers,
No Local, forwarded properties, request/response, shared subscriptions,
Maximum Packet Size and Receive Maximum."""

import time

import pytest

from harness import raw as wire
from harness.clients import V5, publish_props


def test_queued_message_expires_while_the_subscriber_is_offline(mqtt):
    sub = mqtt("sleeper", V5, clean=False, session_expiry=300)
    sub.subscribe("exp/q", 1)
    sub.disconnect()
    pub = mqtt("pub", V5)
    pub.publish("exp/q", b"short-lived", qos=1, properties=publish_props(MessageExpiryInterval=1))
    pub.publish("exp/q", b"long-lived", qos=1, properties=publish_props(MessageExpiryInterval=60))
    time.sleep(2.1)

    back = mqtt("sleeper", V5, clean=False, session_expiry=300)
    message = back.get()
    assert message.payload == b"long-lived", "an expired message was delivered [MQTT-3.3.2-5]"
    remaining = message.properties.get("MessageExpiryInterval")
    # [MQTT-3.3.2-6]: the received value minus the time spent waiting (>= 2 s).
    assert remaining is not None and 0 < remaining <= 58, f"Message Expiry Interval {remaining}"
    back.assert_no_message(within=0.3)


def test_message_expiry_is_forwarded_to_a_connected_subscriber(mqtt):
    sub = mqtt("sub", V5)
    sub.subscribe("exp/live", 1)
    mqtt("pub", V5).publish("exp/live", b"x", qos=1, properties=publish_props(MessageExpiryInterval=30))
    remaining = sub.get().properties.get("MessageExpiryInterval")
    assert remaining is not None and 28 <= remaining <= 30, remaining


def test_topic_alias_from_the_client_is_resolved(mqtt):
    sub = mqtt("sub", V5)
    sub.subscribe("alias/#", 1)
    pub = mqtt("pub", V5)
    maximum = pub.connack.properties.get("TopicAliasMaximum", 0)
    if maximum < 1:
        pytest.skip("broker accepts no topic aliases (Topic Alias Maximum 0)")
    pub.publish("alias/long/topic/name", b"first", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", b"second", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("alias/other", b"third", qos=1, properties=publish_props(TopicAlias=1))  # remap
    pub.publish("", b"fourth", qos=1, properties=publish_props(TopicAlias=1))
    received = [(m.topic, m.payload) for m in sub.expect(4)]
    assert received == [("alias/long/topic/name", b"first"), ("alias/long/topic/name", b"second"),
                        ("alias/other", b"third"), ("alias/other", b"fourth")]


def test_subscription_identifier_is_sent_with_matching_messages(mqtt):
    sub = mqtt("sub", V5)
    sub.subscribe("subid/+", 1, subscription_id=7)
    sub.subscribe("subid/none", 1)
    pub = mqtt("pub", V5)
    pub.publish("subid/x", b"with id", qos=1)
    assert sub.get().properties.get("SubscriptionIdentifier") == [7]


def test_overlapping_subscriptions_report_every_subscription_identifier(mqtt):
    sub = mqtt("sub", V5)
    sub.subscribe("subid/+", 1, subscription_id=7)
    sub.subscribe("subid/#", 1, subscription_id=9)
    mqtt("pub", V5).publish("subid/both", b"x", qos=1)
    first = sub.get()
    ids = list(first.properties.get("SubscriptionIdentifier", []))
    if len(ids) < 2:  # one copy per subscription [MQTT-3.3.4-5]
        ids += sub.get().properties.get("SubscriptionIdentifier", [])
    assert sorted(ids) == [7, 9]  # [MQTT-3.3.4-3], [MQTT-3.3.4-4]


def test_no_local_suppresses_the_clients_own_messages(mqtt):
    client = mqtt("talker", V5)
    client.subscribe("nolocal/t", 1, no_local=True)
    other = mqtt("other", V5)
    client.publish("nolocal/t", b"mine", qos=1)
    other.publish("nolocal/t", b"theirs", qos=1)
    assert client.get().payload == b"theirs"
    client.assert_no_message(within=0.3)


def test_publish_properties_are_forwarded_unchanged(mqtt):
    sub = mqtt("sub", V5)
    sub.subscribe("props/t", 1)
    user = [("b-key", "1"), ("a-key", "2"), ("b-key", "3"), ("ünï", "cødé")]
    mqtt("pub", V5).publish("props/t", "{}", qos=1, properties=publish_props(
        UserProperty=user, ContentType="application/json", ResponseTopic="props/reply",
        CorrelationData=b"\x00corr\xff", PayloadFormatIndicator=1,
    ))
    props = sub.get().properties
    assert props.get("UserProperty") == user  # order kept [MQTT-3.3.2-18]
    assert props.get("ContentType") == "application/json"
    assert props.get("ResponseTopic") == "props/reply"
    assert props.get("CorrelationData") == b"\x00corr\xff"
    assert props.get("PayloadFormatIndicator") == 1


def test_request_response_round_trip(mqtt):
    responder = mqtt("responder", V5)
    responder.subscribe("service/request", 1)
    requester = mqtt("requester", V5)
    requester.subscribe("client/requester/reply", 1)
    requester.publish("service/request", b"2+2", qos=1, properties=publish_props(
        ResponseTopic="client/requester/reply", CorrelationData=b"req-42"))

    request = responder.get()
    responder.publish(request.properties["ResponseTopic"], b"4", qos=1,
                      properties=publish_props(CorrelationData=request.properties["CorrelationData"]))
    reply = requester.get()
    assert (reply.payload, reply.properties.get("CorrelationData")) == (b"4", b"req-42")


def test_shared_subscription_delivers_each_message_to_exactly_one_member(mqtt):
    members = [mqtt(f"member-{i}", V5) for i in range(2)]
    for member in members:
        member.subscribe("$share/workers/jobs/+", 1)
    pub = mqtt("pub", V5)
    for i in range(50):
        pub.publish(f"jobs/{i % 3}", str(i).encode(), qos=1)

    deadline = time.monotonic() + 5
    got = [[], []]
    while sum(map(len, got)) < 50 and time.monotonic() < deadline:
        for index, member in enumerate(members):
            got[index] += [int(m.payload) for m in member.drain()]
        time.sleep(0.02)
    time.sleep(0.2)
    for index, member in enumerate(members):
        got[index] += [int(m.payload) for m in member.drain()]
    assert sorted(got[0] + got[1]) == list(range(50)), "lost or duplicated messages"
    assert got[0] and got[1], f"one member got everything: {list(map(len, got))}"


def test_shared_and_plain_subscriptions_both_receive(mqtt):
    member = mqtt("member", V5)
    member.subscribe("$share/g/mixed", 1)
    plain = mqtt("plain", V5)
    plain.subscribe("mixed", 1)
    mqtt("pub", V5).publish("mixed", b"both", qos=1)
    assert member.get().payload == b"both"
    assert plain.get().payload == b"both"


def test_messages_over_the_clients_maximum_packet_size_are_not_sent(mqtt):
    small = mqtt("small", V5, connect_properties={"MaximumPacketSize": 100})
    small.subscribe("size/t", 1)
    pub = mqtt("pub", V5)
    pub.publish("size/t", b"x" * 500, qos=1)
    pub.publish("size/t", b"small", qos=1)
    # [MQTT-3.1.2-24], [MQTT-3.1.2-25]: the large one is dropped, the small one follows.
    assert small.get().payload == b"small"
    small.assert_no_message(within=0.3)
    assert small.is_connected


def test_receive_maximum_limits_unacknowledged_messages(mqtt, raw):
    client = raw(V5)
    client.connect("slow", props={wire.RECEIVE_MAXIMUM: 2})
    client.send(wire.subscribe(1, [("recv/max", 1)], version=V5))
    client.expect(wire.SUBACK)
    pub = mqtt("pub", V5)
    for i in range(5):
        pub.publish("recv/max", str(i).encode(), qos=1)

    first = [client.expect(wire.PUBLISH) for _ in range(2)]
    with pytest.raises(TimeoutError):  # [MQTT-3.3.4-9]: no third before an acknowledgement
        client.read(timeout=0.5)
    client.send(wire.puback(first[0].publish_fields()[1]))
    third = client.expect(wire.PUBLISH)
    assert [p.publish_fields()[2] for p in first + [third]] == [b"0", b"1", b"2"]
