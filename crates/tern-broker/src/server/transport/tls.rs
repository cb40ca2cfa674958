//! TLS for the `tls` and `wss` listeners: the rustls server configuration
//! built from PEM files (certificate chain, private key, and for mutual
//! TLS the CA of client certificates), reloadable while the broker runs,
//! and the identity read from a client certificate.
//!
//! A reload builds a whole new configuration from the files and swaps the
//! `Arc` the listener hands to each new handshake; connections already
//! established keep the configuration they were made with. A reload that
//! fails keeps the old configuration.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;

/// Why a listener's certificates could not be loaded. Each message names
/// the setting (`cert`, `key`, `ca`), the file and the fix.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error(
        "{key} = {path:?} cannot be read ({source}): check the path and that the broker may read the file"
    )]
    Read {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error(
        "{key} = {path:?} is not valid PEM ({detail}): give a PEM file, as `openssl x509 -text -in FILE` or `openssl pkey -in FILE` can read"
    )]
    Pem {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        detail: String,
    },
    /// A certificate file holds no certificate.
    #[error("{key} = {path:?} holds no certificate: give PEM certificates (-----BEGIN CERTIFICATE-----){hint}", hint = if *key == "cert" { ", the server's first, then its intermediates" } else { "" })]
    NoCertificate {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "key = {path:?} holds no private key: give the certificate's private key in PEM (PKCS#8 -----BEGIN PRIVATE KEY-----, PKCS#1 or SEC1)"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not the certificate's.
    #[error(
        "key = {key:?} does not match the certificate in cert = {cert:?}: give the private key of that certificate (`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` print the same key when they match)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate, the key or the CA.
    #[error("{key} = {path:?} cannot be used: {detail}")]
    Unusable {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What rustls reported.
        detail: String,
    },
}

/// The files of one TLS listener and how it treats client certificates.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA of client certificates; with it, clients may present one.
    pub ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate.
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// Reads the files and builds a server configuration: TLS 1.2 and 1.3,
    /// ring's algorithms, client certificates checked against `ca`.
    pub(crate) fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certificates("cert", &self.cert)?;
        let key = read_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| self.unusable("cert", &self.cert, &error))?;
        let builder = match &self.ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(self.client_verifier(ca, provider)?),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|error| match error {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                },
                other => self.unusable("key", &self.key, &other),
            })?;
        Ok(Arc::new(config))
    }

    fn client_verifier(
        &self,
        ca: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
        let mut roots = RootCertStore::empty();
        for certificate in read_certificates("ca", ca)? {
            roots
                .add(certificate)
                .map_err(|error| self.unusable("ca", ca, &error))?;
        }
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let builder = if self.require_client_cert {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        builder
            .build()
            .map_err(|error| self.unusable("ca", ca, &error))
    }

    fn unusable(&self, key: &'static str, path: &Path, error: &dyn std::fmt::Display) -> TlsError {
        TlsError::Unusable {
            key,
            path: path.to_owned(),
            detail: error.to_string(),
        }
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            key,
            path: path.to_owned(),
            detail: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => TlsError::Pem {
            key: "key",
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })
}

/// A listener's TLS configuration, replaced whole by [`ReloadableTls::reload`].
#[derive(Debug)]
pub(crate) struct ReloadableTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableTls {
    /// Loads the files once; fails if they cannot serve.
    pub(crate) fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = files.load()?;
        Ok(Self {
            files,
            current: RwLock::new(config),
        })
    }

    /// An acceptor with the configuration in force now, for one handshake.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&config))
    }

    /// Reads the files again and, if they serve, makes new handshakes use
    /// them. On failure the configuration in force is kept.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let config = self.files.load()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }
}

/// The identity in a client certificate: its subject's common name, or
/// when it has none its first subject alternative name (DNS name, e-mail
/// address, URI or IP address). `None` if it has neither or cannot be
/// parsed (rustls has verified it already; this reads names only).
pub(crate) fn certificate_identity(certificate: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .find_map(|name| name.as_str().ok())
        .filter(|name| !name.is_empty());
    if let Some(name) = common_name {
        return Some(name.to_owned());
    }
    let names = parsed.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::DNSName(text) | GeneralName::RFC822Name(text) | GeneralName::URI(text) => {
                Some((*text).to_owned())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                16 => {
                    Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string())
                }
                _ => None,
            },
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn certificate(common_name: Option<&str>, names: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        // rcgen puts a default CN in; start from an empty subject.
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(name) = common_name {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.subject_alt_names = names;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn identity_is_the_common_name_else_the_first_subject_alternative_name() {
        let dns = |name: &str| SanType::DnsName(name.try_into().unwrap());
        let with_cn = certificate(Some("device-17"), vec![dns("d17.example.com")]);
        assert_eq!(certificate_identity(&with_cn).as_deref(), Some("device-17"));
        let without_cn = certificate(None, vec![dns("d17.example.com"), dns("other")]);
        assert_eq!(
            certificate_identity(&without_cn).as_deref(),
            Some("d17.example.com")
        );
        let ip_only = certificate(None, vec![SanType::IpAddress([10, 0, 0, 7].into())]);
        assert_eq!(certificate_identity(&ip_only).as_deref(), Some("10.0.0.7"));
        assert_eq!(certificate_identity(&certificate(None, vec![])), None);
        assert_eq!(certificate_identity(b"not a certificate"), None);
    }

    #[test]
    fn a_failed_reload_keeps_the_configuration_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = TlsFiles {
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            ca: None,
            require_client_cert: false,
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let tls = ReloadableTls::load(files.clone()).unwrap();
        let before = Arc::clone(&tls.current.read().unwrap());
        std::fs::remove_file(&files.key).unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.starts_with("key = "), "{error}");
        assert!(error.contains("cannot be read"), "{error}");
        assert!(Arc::ptr_eq(&before, &tls.current.read().unwrap()));
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current.read().unwrap()));
    }
}
