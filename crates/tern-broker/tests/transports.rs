//! Listener transports end to end, in process: TLS with certificates made
//! by rcgen at test time (no key is committed), mutual TLS, certificate
//! reload, the errors of bad certificate files, the PROXY protocol and the
//! per-listener connection limit. Real third-party clients (paho,
//! mosquitto_pub, WebSocket) are in tests/e2e/test_transports.py.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tern_broker::{BrokerConfig, BrokerError, ListenerConfig, ListenerKind, Server, TlsError};
use tern_codec::{ConnAck, Connect, Decoder, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(5);

/// A test certificate authority and the files it issued, in a temporary
/// directory.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

/// A certificate and its key, as PEM files and as DER for clients.
struct Issued {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let pki = Self {
            ca,
            dir: tempfile::tempdir()?,
        };
        std::fs::write(pki.ca_path(), pki.ca.pem())?;
        Ok(pki)
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `names` (SANs) with common name `cn`, written to
    /// `file.pem` and `file.key`.
    fn issue(&self, file: &str, cn: &str, names: &[&str]) -> Result<Issued> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let cert_path = self.dir.path().join(format!("{file}.pem"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok(Issued {
            cert_path,
            key_path,
            cert: cert.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der()).map_err(anyhow::Error::msg)?,
        })
    }

    fn server(&self, file: &str) -> Result<Issued> {
        self.issue(file, "tern test server", &["localhost", "127.0.0.1"])
    }
}

fn tls_listener(server: &Issued) -> ListenerConfig {
    ListenerConfig {
        name: Some("secure".into()),
        cert: Some(server.cert_path.clone()),
        key: Some(server.key_path.clone()),
        ..ListenerConfig::new(ListenerKind::Tls, "127.0.0.1:0".parse().unwrap())
    }
}

async fn start(listener: ListenerConfig) -> Result<(Server, SocketAddr)> {
    let config = BrokerConfig {
        listeners: Vec::new(),
        listener: vec![listener],
        ..BrokerConfig::for_tests()
    };
    let server = Server::start(config).await?;
    let address = server.local_addrs()[0];
    Ok((server, address))
}

/// A TLS client trusting `ca`, presenting `identity` if given.
fn connector(ca: &Pki, identity: Option<&Issued>) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(issued) => {
            builder.with_client_auth_cert(vec![issued.cert.clone()], issued.key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

type TlsClient = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(connector: &TlsConnector, address: SocketAddr) -> Result<TlsClient> {
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from("localhost")?;
    Ok(tokio::time::timeout(WAIT, connector.connect(name, tcp)).await??)
}

fn server_certificate(stream: &TlsClient) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a server certificate")[0].clone()
}

/// Sends an MQTT 3.1.1 CONNECT and returns the CONNACK.
async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
) -> Result<ConnAck> {
    let connect = Connect::new(ProtocolVersion::V3_1_1, client_id, 0);
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(connect)).encode(ProtocolVersion::V3_1_1, &mut bytes)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    match read_packet(stream).await? {
        Packet::ConnAck(connack) => Ok(*connack),
        other => bail!("expected CONNACK, got {other:?}"),
    }
}

async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Packet> {
    let mut decoder = Decoder::new(ProtocolVersion::V3_1_1, tern_codec::MAX_PACKET_SIZE);
    let mut buffer = BytesMut::new();
    loop {
        if let Some(packet) = decoder.decode(&mut buffer)? {
            return Ok(packet);
        }
        let read = tokio::time::timeout(WAIT, stream.read_buf(&mut buffer))
            .await
            .context("no packet within 5 s")??;
        ensure!(read > 0, "the broker closed the connection");
    }
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<()> {
    stream.write_all(&[0xC0, 0x00]).await?;
    stream.flush().await?;
    match read_packet(stream).await? {
        Packet::PingResp => Ok(()),
        other => bail!("expected PINGRESP, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_listener_serves_mqtt_and_reload_swaps_certificates_for_new_connections() -> Result<()>
{
    let pki = Pki::new("test ca")?;
    let first = pki.server("server")?;
    let (server, address) = start(tls_listener(&first)).await?;
    let client = connector(&pki, None)?;

    let mut old = tls_connect(&client, address).await?;
    assert_eq!(server_certificate(&old), first.cert);
    assert_eq!(
        mqtt_connect(&mut old, "old").await?.reason_code,
        ReasonCode::Success
    );

    // New files at the same paths, then a reload.
    let second = pki.server("server")?;
    assert_ne!(first.cert, second.cert);
    let reloads = server.reload_tls();
    assert_eq!(reloads.len(), 1);
    assert_eq!(reloads[0].listener, "secure");
    assert!(reloads[0].result.is_ok(), "{:?}", reloads[0].result);
    let mut new = tls_connect(&client, address).await?;
    assert_eq!(server_certificate(&new), second.cert);
    mqtt_connect(&mut new, "new").await?;
    ping(&mut old)
        .await
        .context("the old connection must survive the reload")?;

    // A key that is not the certificate's: the reload fails, and the
    // certificates in force stay.
    let other = pki.server("other")?;
    std::fs::copy(&other.key_path, &second.key_path)?;
    let reloads = server.reload_tls();
    match &reloads[0].result {
        Err(error @ TlsError::KeyMismatch { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("does not match the certificate"),
                "{message}"
            );
        }
        other => bail!("expected a key mismatch, got {other:?}"),
    }
    let still = tls_connect(&client, address).await?;
    assert_eq!(server_certificate(&still), second.cert);
    ping(&mut old).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() -> Result<()> {
    let pki = Pki::new("test ca")?;
    let stranger = Pki::new("another ca")?;
    let server_files = pki.server("server")?;
    let listener = ListenerConfig {
        ca: Some(pki.ca_path()),
        require_client_cert: true,
        use_identity_as_username: true,
        ..tls_listener(&server_files)
    };
    let (server, address) = start(listener).await?;

    let device = pki.issue("device", "device-17", &[])?;
    let mut trusted = tls_connect(&connector(&pki, Some(&device))?, address).await?;
    assert_eq!(
        mqtt_connect(&mut trusted, "device-17").await?.reason_code,
        ReasonCode::Success
    );

    let untrusted = stranger.issue("intruder", "device-17", &[])?;
    // The client trusts the server's CA but presents a certificate of
    // another CA, or none. With TLS 1.3 the client learns of the refusal
    // on its first read, so the CONNECT is what fails.
    let refused_clients = [
        ("no certificate", connector(&pki, None)?),
        (
            "another CA's certificate",
            connector(&pki, Some(&untrusted))?,
        ),
    ];
    for (what, client) in &refused_clients {
        let refused = async {
            let mut stream = tls_connect(client, address).await?;
            mqtt_connect(&mut stream, "refused").await
        }
        .await;
        ensure!(
            refused.is_err(),
            "a client with {what} was accepted: {refused:?}"
        );
    }
    ping(&mut trusted).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_naming_listener_key_and_file() -> Result<()> {
    let pki = Pki::new("test ca")?;
    let good = pki.server("server")?;
    let other = pki.server("other")?;
    let not_pem = pki.dir.path().join("notes.txt");
    std::fs::write(&not_pem, "just some text\n")?;
    let missing = pki.dir.path().join("missing.pem");

    let cases: Vec<(ListenerConfig, &str)> = vec![
        (
            ListenerConfig {
                cert: Some(missing.clone()),
                ..tls_listener(&good)
            },
            "cert = ",
        ),
        (
            ListenerConfig {
                key: Some(other.key_path.clone()),
                ..tls_listener(&good)
            },
            "does not match the certificate",
        ),
        (
            ListenerConfig {
                key: Some(not_pem.clone()),
                ..tls_listener(&good)
            },
            "holds no private key",
        ),
        (
            ListenerConfig {
                ca: Some(not_pem.clone()),
                ..tls_listener(&good)
            },
            "ca = ",
        ),
        (
            ListenerConfig {
                ca: Some(missing.clone()),
                ..tls_listener(&good)
            },
            "cannot be read",
        ),
    ];
    for (listener, expected) in cases {
        let error = match start(listener).await {
            Ok(_) => bail!("started despite a bad file ({expected})"),
            Err(error) => error,
        };
        let message = error.to_string();
        ensure!(
            message.starts_with("listener \"secure\": ") && message.contains(expected),
            "{message} lacks {expected}"
        );
        let typed = error.downcast_ref::<BrokerError>();
        ensure!(matches!(typed, Some(BrokerError::Tls { .. })), "{typed:?}");
    }
    Ok(())
}

#[tokio::test]
async fn proxy_listener_takes_the_header_and_refuses_a_connection_without_one() -> Result<()> {
    let listener = ListenerConfig {
        proxy_protocol: true,
        ..ListenerConfig::new(ListenerKind::Tcp, "127.0.0.1:0".parse().unwrap())
    };
    let (server, address) = start(listener).await?;

    let mut proxied = TcpStream::connect(address).await?;
    proxied
        .write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n")
        .await?;
    assert_eq!(
        mqtt_connect(&mut proxied, "proxied").await?.reason_code,
        ReasonCode::Success
    );

    let mut direct = TcpStream::connect(address).await?;
    let refused = mqtt_connect(&mut direct, "direct").await;
    ensure!(
        refused.is_err(),
        "a connection without header was served: {refused:?}"
    );
    ping(&mut proxied).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_listener_limit_closes_connections_beyond_it_on_that_listener_only() -> Result<()> {
    let limited = ListenerConfig {
        max_connections: 1,
        ..ListenerConfig::new(ListenerKind::Tcp, "127.0.0.1:0".parse().unwrap())
    };
    let config = BrokerConfig {
        listener: vec![limited],
        ..BrokerConfig::for_tests()
    };
    let server = Server::start(config).await?;
    let [open, limited] = server.local_addrs() else {
        bail!("expected two listeners: {:?}", server.local_addrs());
    };
    let mut first = TcpStream::connect(limited).await?;
    mqtt_connect(&mut first, "first").await?;
    let mut second = TcpStream::connect(limited).await?;
    ensure!(
        mqtt_connect(&mut second, "second").await.is_err(),
        "second was served"
    );
    let mut elsewhere = TcpStream::connect(open).await?;
    mqtt_connect(&mut elsewhere, "elsewhere").await?;
    drop(first);
    // The slot is free again once the first connection has ended.
    let mut third = None;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(limited).await?;
        if mqtt_connect(&mut stream, "third").await.is_ok() {
            third = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(third.is_some(), "the slot was not given back");
    assert!(server.metrics().connections_refused >= 1);
    server.shutdown().await?;
    Ok(())
}
