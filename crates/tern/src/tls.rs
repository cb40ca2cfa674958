//! TLS for the command line's own clients (`tern pub`, `tern sub`, `tern
//! bench`): the flags, and the rustls client configuration they make.
//!
//! The server's certificate is checked against the CA certificates of
//! `--cafile` and the name it is reached by (`--host`, or
//! `--tls-server-name`). There is no system trust store and no switch to
//! skip the check: a test broker's self-made CA is given with `--cafile`,
//! as with `mosquitto_pub --cafile`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client's TLS connection over TCP.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS flags.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Connect over TLS (implied by --cafile).
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificates the broker's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// PEM file of a client certificate, for brokers that ask for one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the broker's certificate must carry [default: --host].
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// What every TLS connection of a run shares: the configuration and the
/// name the server's certificate is checked against.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    /// The server's name (a DNS name or an IP address).
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// Runs the TLS handshake over a connected socket.
    pub async fn connect(&self, stream: TcpStream) -> io::Result<TlsStream> {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
    }
}

impl TlsArgs {
    /// The TLS client these flags ask for, `None` for plain TCP; `host` is
    /// the broker's name on the command line.
    pub fn client(&self, host: &str) -> anyhow::Result<Option<TlsClient>> {
        if !self.tls && self.cafile.is_none() {
            if self.cert.is_some() {
                bail!("--cert and --key are for TLS: add --cafile with the broker's CA");
            }
            return Ok(None);
        }
        let Some(cafile) = &self.cafile else {
            bail!(
                "--tls needs --cafile: the PEM file of the CA that signed the broker's \
                 certificate (there is no system trust store here)"
            );
        };
        let mut roots = RootCertStore::empty();
        for certificate in read_certificates(cafile)? {
            roots
                .add(certificate)
                .with_context(|| format!("{}: not a usable CA certificate", cafile.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls has no protocol version in common with its provider")?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
                .with_context(|| {
                    format!(
                        "{} and {}: the key does not match the certificate, or is of a kind \
                         rustls cannot use",
                        cert.display(),
                        key.display()
                    )
                })?,
            _ => builder.with_no_client_auth(),
        };
        let name = self.tls_server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned()).with_context(|| {
            format!("{name:?} is neither a DNS name nor an IP address: give --tls-server-name")
        })?;
        Ok(Some(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }))
    }
}

/// What to check after a failed TLS handshake, from rustls's message.
pub fn tls_hint(error: &io::Error) -> &'static str {
    let message = error.to_string();
    if message.contains("UnknownIssuer") || message.contains("BadSignature") {
        "; --cafile must hold the CA that signed the broker's certificate"
    } else if message.contains("not valid for name") {
        "; connect by a name the certificate holds, or give it with --tls-server-name"
    } else if message.contains("eof") {
        "; the broker closed the connection: is this port a TLS listener?"
    } else {
        ""
    }
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM", path.display()))?;
    if certificates.is_empty() {
        bail!("{}: no CERTIFICATE block in it", path.display());
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "{}: no private key in it (PKCS#8, PKCS#1 or SEC1 PEM)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tls: bool, cafile: Option<&Path>) -> TlsArgs {
        TlsArgs {
            tls,
            cafile: cafile.map(Path::to_path_buf),
            ..TlsArgs::default()
        }
    }

    #[test]
    fn without_tls_flags_the_connection_is_plain() {
        assert!(args(false, None).client("localhost").unwrap().is_none());
    }

    #[test]
    fn tls_without_a_ca_says_to_give_one() {
        let error = args(true, None).client("localhost").err().unwrap();
        assert!(error.to_string().contains("--cafile"), "{error}");
    }

    #[test]
    fn a_ca_file_implies_tls_and_names_the_server_by_its_host() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cafile = dir.path().join("ca.pem");
        std::fs::write(&cafile, ca.pem()).unwrap();
        let client = args(false, Some(&cafile))
            .client("127.0.0.1")
            .unwrap()
            .expect("TLS");
        assert_eq!(client.server_name.to_str(), "127.0.0.1");
        let missing = args(false, Some(&dir.path().join("none.pem")))
            .client("localhost")
            .err()
            .unwrap();
        assert!(
            format!("{missing:#}").contains("could not read"),
            "{missing:#}"
        );
    }

    #[test]
    fn a_failed_handshake_says_what_to_check() {
        let hint = |text: &str| tls_hint(&io::Error::other(text.to_string()));
        assert!(hint("invalid peer certificate: UnknownIssuer").contains("--cafile must hold"));
        assert!(hint("invalid peer certificate: BadSignature").contains("--cafile must hold"));
        assert!(hint("certificate not valid for name \"localhost\"").contains("--tls-server-name"));
        assert!(hint("tls handshake eof").contains("TLS listener?"));
        assert_eq!(hint("something else"), "");
    }
}
