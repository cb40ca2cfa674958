//! Passwords, the ACL and `Server::reload_auth`, through the library API.

use anyhow::Result;
use bytes::Bytes;
use tern_auth::{PasswordFile, PasswordHash, ScramCredentials};
use tern_broker::BrokerConfig;
use tern_codec::{Connect, ProtocolVersion, QoS, ReasonCode};

use crate::common::{TestClient, publish, start_with};

fn login(user: &str, password: &str) -> Connect {
    let mut connect = Connect::new(ProtocolVersion::V5, user, 0);
    connect.username = Some(user.into());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    connect
}

#[tokio::test]
async fn passwords_acl_and_reload() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let passwords = dir.path().join("passwd");
    let mut file = PasswordFile::default();
    let credentials = ScramCredentials::generate(b"pw", 4096)?;
    file.set("ann", PasswordHash::Scram(credentials));
    file.save(&passwords)?;
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user ann\ntopic write a/#\n")?;
    let config = BrokerConfig {
        password_file: Some(passwords),
        acl_file: Some(acl.clone()),
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;

    let (_, refused) = TestClient::connect_with(address, login("ann", "nope")).await?;
    assert_eq!(refused.reason_code, ReasonCode::BadUserNameOrPassword);
    let (mut ann, connack) = TestClient::connect_with(address, login("ann", "pw")).await?;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let ack = ann
        .publish(publish("b/1", "x", QoS::AtLeastOnce, 1))
        .await?;
    assert_eq!(ack.map(|a| a.reason_code), Some(ReasonCode::NotAuthorized));
    let ack = ann
        .publish(publish("a/1", "x", QoS::AtLeastOnce, 2))
        .await?;
    assert_eq!(
        ack.map(|a| a.reason_code),
        Some(ReasonCode::NoMatchingSubscribers)
    );

    std::fs::write(&acl, "user ann\ntopic write b/#\n")?;
    server.reload_auth().await?;
    let ack = ann
        .publish(publish("b/1", "x", QoS::AtLeastOnce, 3))
        .await?;
    assert_eq!(
        ack.map(|a| a.reason_code),
        Some(ReasonCode::NoMatchingSubscribers)
    );

    std::fs::write(&acl, "user ann\ntopic write b/#\nbogus line\n")?;
    let error = server.reload_auth().await.unwrap_err().to_string();
    assert!(
        error.contains("acl:3: unknown statement `bogus`"),
        "{error}"
    );
    let ack = ann
        .publish(publish("b/2", "x", QoS::AtLeastOnce, 4))
        .await?;
    assert_eq!(
        ack.map(|a| a.reason_code),
        Some(ReasonCode::NoMatchingSubscribers),
        "the rules in force stay"
    );

    let metrics = server.metrics();
    assert_eq!((metrics.connect_denied, metrics.publish_denied), (1, 1));
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_password_file_stops_the_start_with_its_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let passwords = dir.path().join("passwd");
    std::fs::write(&passwords, "ann:$7$101$notbase64!$x\n")?;
    let config = BrokerConfig {
        password_file: Some(passwords),
        ..BrokerConfig::for_tests()
    };
    let error = start_with(config).await.expect_err("refused").to_string();
    assert!(error.contains("passwd:1: user \"ann\""), "{error}");
    assert!(error.contains("tern passwd"), "{error}");
    Ok(())
}
