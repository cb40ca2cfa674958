//! Authentication (password, SCRAM-SHA-256 over AUTH), the ACL checks of
//! publish, subscribe, delivery and wills, and the topic, client
//! identifier and subscription limits.

use std::path::Path;

use bytes::Bytes;
use tern_auth::{Acl, AuthSettings, Authorizer, PasswordFile, PasswordHash, ScramClient};
use tern_codec::{
    Auth, AuthProperties, ConnAck, LastWill, Subscribe, SubscribeProperties, SubscriptionOptions,
};

use super::*;
use crate::protocol::{Denial, InboundAck, RouteOutcome};

const ACL: &str = "\
user alice
topic readwrite alice/#
topic read news/#
pattern write clients/%c/out
";

fn authorizer(allow_anonymous: bool) -> Arc<Authorizer> {
    let mut passwords = PasswordFile::default();
    // Few iterations: the hash's cost is not under test here.
    let credentials = tern_auth::ScramCredentials::generate(b"secret", 64).unwrap();
    passwords.set("alice", PasswordHash::Scram(credentials));
    let acl = Acl::parse(ACL, Path::new("acl")).unwrap();
    let settings = AuthSettings {
        allow_anonymous,
        ..AuthSettings::default()
    };
    Arc::new(Authorizer::from_parts(settings, Some(passwords), Some(acl)))
}

fn harness() -> Harness {
    let mut harness = Harness::new();
    harness.protocol.set_authorizer(authorizer(false));
    harness
}

fn login(version: ProtocolVersion, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut connect = connect(version, "c1");
    connect.username = user.map(Into::into);
    connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    connect
}

fn connack(actions: &[Action]) -> &ConnAck {
    sent(actions)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::ConnAck(connack) => Some(&**connack),
            _ => None,
        })
        .expect("a CONNACK")
}

fn denials(actions: &[Action]) -> Vec<Denial> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Denied { denial, .. } => Some(*denial),
            _ => None,
        })
        .collect()
}

fn logged_in(version: ProtocolVersion) -> Harness {
    let mut harness = harness();
    harness.connect_with(login(version, Some("alice"), Some("secret")), None);
    assert!(harness.protocol.is_connected());
    harness
}

#[test]
fn passwords_decide_and_refusals_carry_the_right_code() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let cases = [
            (
                Some("alice"),
                Some("wrong"),
                ReasonCode::BadUserNameOrPassword,
            ),
            (Some("alice"), None, ReasonCode::BadUserNameOrPassword),
            (
                Some("mallory"),
                Some("secret"),
                ReasonCode::BadUserNameOrPassword,
            ),
            (None, None, ReasonCode::NotAuthorized),
        ];
        for (user, password, expected) in cases {
            let mut harness = harness();
            let actions = harness.connect_with(login(version, user, password), None);
            assert_eq!(
                connack(&actions).reason_code,
                expected,
                "{user:?} {password:?}"
            );
            assert_eq!(denials(&actions), [Denial::Connect]);
            assert!(closes(&actions) && harness.protocol.is_closed());
        }
        let harness = logged_in(version);
        assert_eq!(harness.protocol.user().map(|u| &**u), Some("alice"));
    }
}

#[test]
fn the_runtime_checks_passwords_before_the_connect_deadline() {
    let mut harness = harness();
    let connect = login(ProtocolVersion::V5, Some("alice"), Some("secret"));
    let actions = harness.packet(Packet::Connect(Box::new(connect)));
    let [Action::CheckPassword { user, password }] = actions.as_slice() else {
        panic!("expected a password check: {actions:?}");
    };
    assert_eq!(
        (&**user, password.as_deref()),
        ("alice", Some(&b"secret"[..]))
    );
    assert!(!harness.protocol.is_connected() && !harness.protocol.is_closed());
    assert!(harness.input(Input::Tick).is_empty());
    let deadline = harness
        .protocol
        .next_timeout()
        .expect("the CONNECT deadline");
    harness.advance(deadline - harness.now().instant);
    let actions = harness.input(Input::Tick);
    assert!(closes(&actions) && harness.protocol.is_closed());
    // An answer that comes too late changes nothing.
    assert!(harness.input(Input::PasswordChecked(Ok(()))).is_empty());
}

#[test]
fn a_user_verified_by_the_transport_needs_no_password() {
    let mut harness = harness();
    harness.protocol.set_verified_user("alice".into());
    let connect = login(ProtocolVersion::V5, Some("mallory"), None);
    let actions = harness.connect_with(connect, None);
    assert_eq!(connack(&actions).reason_code, ReasonCode::Success);
    assert_eq!(harness.protocol.user().map(|u| &**u), Some("alice"));
    let actions = harness.publish(publish("alice/x", QoS::AtMostOnce, None));
    assert_eq!(routed(&actions).len(), 1, "alice's ACL applies");
}

#[test]
fn anonymous_clients_connect_when_allowed() {
    let mut harness = Harness::new();
    harness.protocol.set_authorizer(authorizer(true));
    let actions = harness.connect_with(login(ProtocolVersion::V5, None, None), None);
    assert_eq!(connack(&actions).reason_code, ReasonCode::Success);
}

#[test]
fn the_listener_decides_anonymous_access_over_the_broker() {
    // (broker-wide, listener's, accepted)
    let cases = [
        (false, None, false),
        (true, None, true),
        (false, Some(true), true),
        (true, Some(false), false),
        (false, Some(false), false),
        (true, Some(true), true),
    ];
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for (broker, listener, accepted) in cases {
            let mut harness = Harness::new();
            harness.protocol.set_authorizer(authorizer(broker));
            if let Some(allow) = listener {
                harness.protocol.set_allow_anonymous(allow);
            }
            let actions = harness.connect_with(login(version, None, None), None);
            let expected = if accepted {
                ReasonCode::Success
            } else {
                ReasonCode::NotAuthorized
            };
            let case = format!("{version:?} broker {broker} listener {listener:?}");
            assert_eq!(connack(&actions).reason_code, expected, "{case}");
            assert_eq!(harness.protocol.is_connected(), accepted, "{case}");
            let refused = if accepted {
                vec![]
            } else {
                vec![Denial::Connect]
            };
            assert_eq!(denials(&actions), refused, "{case}");
        }
    }
}

#[test]
fn a_listener_open_to_anonymous_clients_still_checks_named_users() {
    let cases = [
        ("wrong", ReasonCode::BadUserNameOrPassword),
        ("secret", ReasonCode::Success),
    ];
    for (password, expected) in cases {
        let mut open = harness();
        open.protocol.set_allow_anonymous(true);
        let connect = login(ProtocolVersion::V5, Some("alice"), Some(password));
        let actions = open.connect_with(connect, None);
        assert_eq!(connack(&actions).reason_code, expected, "{password}");
        let user = open.protocol.user().map(|u| u.to_string());
        let accepted = expected == ReasonCode::Success;
        assert_eq!(user.as_deref(), accepted.then_some("alice"), "{password}");
    }
}

fn scram_connect(client: &ScramClient, method: &str) -> Connect {
    let mut connect = login(ProtocolVersion::V5, None, None);
    connect.properties.authentication_method = Some(method.into());
    connect.properties.authentication_data = Some(client.client_first().into());
    connect
}

fn auth_data(actions: &[Action]) -> Vec<u8> {
    sent(actions)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::Auth(auth) => {
                assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
                auth.properties
                    .authentication_data
                    .as_deref()
                    .map(<[u8]>::to_vec)
            }
            _ => None,
        })
        .expect("an AUTH with data")
}

fn client_auth(data: Vec<u8>) -> Packet {
    Packet::Auth(Box::new(Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(data.into()),
            ..AuthProperties::default()
        },
        ..Auth::default()
    }))
}

#[test]
fn scram_sha_256_over_auth_packets() {
    let mut harness = harness();
    let mut client = ScramClient::new("alice", "secret", "fyko+d2lbbFgONRv9qkxdawL");
    let actions = harness.packet(Packet::Connect(Box::new(scram_connect(
        &client,
        "SCRAM-SHA-256",
    ))));
    let server_first = auth_data(&actions);
    assert!(!harness.protocol.is_connected() && !harness.protocol.is_closed());
    let client_final = client.client_final(&server_first).unwrap();
    let actions = harness.packet(client_auth(client_final));
    let Some(Action::OpenSession(request)) = actions.first() else {
        panic!("expected the session to open: {actions:?}");
    };
    harness.session = Some(Session::new(
        request.client_id.clone(),
        request.expiry,
        SessionLimits::default(),
    ));
    let actions = harness.input(Input::SessionOpened {
        session_present: false,
    });
    let connack = connack(&actions);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack.properties.authentication_method.as_deref(),
        Some("SCRAM-SHA-256")
    );
    let server_final = connack.properties.authentication_data.clone().unwrap();
    client.verify_server_final(&server_final).unwrap();
    assert_eq!(harness.protocol.user().map(|u| &**u), Some("alice"));
}

fn reauth(reason: ReasonCode, data: Vec<u8>) -> Packet {
    let Packet::Auth(mut auth) = client_auth(data) else {
        unreachable!("client_auth builds an AUTH")
    };
    auth.reason_code = reason;
    Packet::Auth(auth)
}

/// A harness connected as alice through SCRAM.
fn scram_connected() -> Harness {
    let mut harness = harness();
    let mut client = ScramClient::new("alice", "secret", "n0");
    let connect = scram_connect(&client, "SCRAM-SHA-256");
    let actions = harness.packet(Packet::Connect(Box::new(connect)));
    let client_final = client.client_final(&auth_data(&actions)).unwrap();
    let actions = harness.packet(client_auth(client_final));
    let Some(Action::OpenSession(request)) = actions.first() else {
        panic!("expected the session to open: {actions:?}");
    };
    harness.session = Some(Session::new(
        request.client_id.clone(),
        request.expiry,
        SessionLimits::default(),
    ));
    harness.input(Input::SessionOpened {
        session_present: false,
    });
    assert!(harness.protocol.is_connected());
    harness
}

#[test]
fn scram_clients_can_re_authenticate() {
    let mut harness = scram_connected();
    let mut client = ScramClient::new("alice", "secret", "n1");
    let actions = harness.packet(reauth(ReasonCode::ReAuthenticate, client.client_first()));
    let client_final = client.client_final(&auth_data(&actions)).unwrap();
    let actions = harness.packet(client_auth(client_final));
    let [Action::Send(Packet::Auth(done))] = actions.as_slice() else {
        panic!("expected AUTH success: {actions:?}");
    };
    assert_eq!(done.reason_code, ReasonCode::Success);
    let server_final = done.properties.authentication_data.clone().unwrap();
    client.verify_server_final(&server_final).unwrap();
    assert!(harness.protocol.is_connected());

    // A wrong password ends the connection with DISCONNECT 0x87.
    let mut wrong = ScramClient::new("alice", "guess", "n2");
    let actions = harness.packet(reauth(ReasonCode::ReAuthenticate, wrong.client_first()));
    let client_final = wrong.client_final(&auth_data(&actions)).unwrap();
    let actions = harness.packet(client_auth(client_final));
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::NotAuthorized));
    assert_eq!(denials(&actions), [Denial::Connect]);
    assert!(harness.protocol.is_closed());

    // As another user: refused at once.
    let mut harness = scram_connected();
    let other = ScramClient::new("bob", "x", "n3");
    let actions = harness.packet(reauth(ReasonCode::ReAuthenticate, other.client_first()));
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::NotAuthorized));
}

#[test]
fn auth_after_a_password_connect_is_a_protocol_error() {
    let mut harness = logged_in(ProtocolVersion::V5);
    let client = ScramClient::new("alice", "secret", "n4");
    let actions = harness.packet(reauth(ReasonCode::ReAuthenticate, client.client_first()));
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));
}

#[test]
fn scram_with_a_wrong_password_or_unknown_method_is_refused() {
    let mut first = harness();
    let mut client = ScramClient::new("alice", "guess", "abc");
    let actions = first.packet(Packet::Connect(Box::new(scram_connect(
        &client,
        "SCRAM-SHA-256",
    ))));
    let client_final = client.client_final(&auth_data(&actions)).unwrap();
    let actions = first.packet(client_auth(client_final));
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::BadUserNameOrPassword
    );
    assert!(first.protocol.is_closed());

    let mut harness = harness();
    let actions = harness.packet(Packet::Connect(Box::new(scram_connect(
        &client, "KERBEROS",
    ))));
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::BadAuthenticationMethod
    );
    assert_eq!(denials(&actions), [Denial::Connect]);
}

#[test]
fn scram_times_out_at_the_connect_deadline() {
    let mut harness = harness();
    let client = ScramClient::new("alice", "secret", "abc");
    harness.packet(Packet::Connect(Box::new(scram_connect(
        &client,
        "SCRAM-SHA-256",
    ))));
    let deadline = harness.protocol.next_timeout().expect("a deadline");
    harness.advance(deadline - harness.now().instant);
    let actions = harness.input(Input::Tick);
    assert!(closes(&actions) && harness.protocol.is_closed());
}

#[test]
fn publish_needs_write_permission() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut harness = logged_in(version);
        let allowed = harness.publish(publish("alice/x", QoS::AtLeastOnce, Some(1)));
        assert_eq!(routed(&allowed).len(), 1);
        let pattern = harness.publish(publish("clients/c1/out", QoS::AtMostOnce, None));
        assert_eq!(routed(&pattern).len(), 1);
        let denied = harness.publish(publish("news/x", QoS::AtLeastOnce, Some(2)));
        assert!(routed(&denied).is_empty());
        assert_eq!(denials(&denied), [Denial::Publish]);
        assert!(denied.iter().any(|action| matches!(
            action,
            Action::AckInOrder {
                outcome: RouteOutcome::NotAuthorized,
                ..
            }
        )));
        let ack = InboundAck {
            packet_id: id(2),
            qos: QoS::AtLeastOnce,
        };
        let actions = harness.input(Input::Routed {
            ack,
            outcome: RouteOutcome::NotAuthorized,
        });
        let Some(Packet::PubAck(puback)) = sent(&actions).first() else {
            panic!("a PUBACK: {actions:?}");
        };
        let expected = if version.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        assert_eq!(puback.reason_code, expected);
    }
}

fn subscribe_to(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(1),
        properties: SubscribeProperties::default(),
        filters: filters
            .iter()
            .map(|filter| {
                let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
                (TopicFilter::new(*filter).unwrap(), options)
            })
            .collect(),
    })
}

fn suback_codes(actions: &[Action]) -> Vec<ReasonCode> {
    sent(actions)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::SubAck(suback) => Some(suback.reason_codes.clone()),
            _ => None,
        })
        .expect("a SUBACK")
}

#[test]
fn subscribe_needs_subscribe_permission() {
    let mut harness = logged_in(ProtocolVersion::V5);
    let actions = harness.packet(subscribe_to(&["news/+", "#", "$share/g/alice/a", "secret"]));
    assert_eq!(
        suback_codes(&actions),
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized
        ]
    );
    assert_eq!(denials(&actions), [Denial::Subscribe, Denial::Subscribe]);
    let subscribed: Vec<_> = harness
        .session()
        .subscriptions()
        .keys()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(subscribed, ["$share/g/alice/a", "news/+"]);
}

#[test]
fn deliveries_need_read_permission() {
    let mut harness = logged_in(ProtocolVersion::V5);
    let actions = harness.deliver(message("alice/secret-plans", QoS::AtLeastOnce, 3));
    assert_eq!(sent(&actions).len(), 1);
    // A message the ACL does not let alice read: withheld and counted,
    // its packet identifier freed.
    let actions = harness.deliver(message("other/topic", QoS::AtLeastOnce, 3));
    assert!(sent(&actions).is_empty(), "{actions:?}");
    assert_eq!(harness.session().drops().not_authorized, 1);
    assert_eq!(harness.session().in_flight().len(), 1);
}

#[test]
fn wills_need_write_permission() {
    let mut harness = harness();
    let mut connect = login(ProtocolVersion::V5, Some("alice"), Some("secret"));
    connect.will = Some(LastWill {
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        topic: "news/obituary".into(),
        payload: Bytes::from_static(b"bye"),
    });
    let actions = harness.connect_with(connect, None);
    assert_eq!(connack(&actions).reason_code, ReasonCode::NotAuthorized);
    assert_eq!(denials(&actions), [Denial::Will]);
}

#[test]
fn limits_on_client_ids_topics_and_subscriptions() {
    let mut harness = Harness::with_settings(|settings| {
        settings.max_client_id_length = 4;
        settings.max_topic_levels = 3;
        settings.max_topic_length = 10;
        settings.max_subscriptions = Some(2);
    });
    let actions = harness.connect_with(connect(ProtocolVersion::V5, "toolong"), None);
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
    assert_eq!(denials(&actions), [Denial::Limit]);

    let mut harness = Harness::with_settings(|settings| {
        settings.max_topic_levels = 3;
        settings.max_topic_length = 20;
        settings.max_subscriptions = Some(2);
    });
    harness.connect_with(connect(ProtocolVersion::V5, "c"), None);
    for topic in ["a/b/c/d", "abcdefghijklmnopqrstu"] {
        let actions = harness.publish(publish(topic, QoS::AtLeastOnce, Some(1)));
        assert!(routed(&actions).is_empty());
        assert!(actions.iter().any(|action| matches!(
            action,
            Action::AckInOrder {
                outcome: RouteOutcome::TopicInvalid,
                ..
            }
        )));
        harness.input(Input::Routed {
            ack: InboundAck {
                packet_id: id(1),
                qos: QoS::AtLeastOnce,
            },
            outcome: RouteOutcome::TopicInvalid,
        });
    }
    assert_eq!(
        routed(&harness.publish(publish("a/b/c", QoS::AtMostOnce, None))).len(),
        1
    );
    // `$share/g/` counts towards the length but not the levels.
    let actions = harness.packet(subscribe_to(&["a/+/c/#", "$share/g/a/b/c", "x", "x", "z"]));
    assert_eq!(
        suback_codes(&actions),
        [
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1,
            ReasonCode::QuotaExceeded
        ]
    );
}
