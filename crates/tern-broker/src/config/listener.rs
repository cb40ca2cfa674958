//! [`ListenerConfig`]: one `[[listener]]` table, a listener with its own
//! transport (MQTT over TCP, TLS, WebSocket or secure WebSocket), PROXY
//! protocol and connection limit; and its validation, which needs no file
//! (the certificate files are read when the server starts).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

/// The default HTTP path of WebSocket listeners.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// What a listener speaks below MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over plain TCP (conventionally port 1883).
    #[default]
    Tcp,
    /// MQTT over TLS 1.2 or 1.3 (port 8883).
    Tls,
    /// MQTT over WebSocket, binary frames (often port 8080 or 80).
    Ws,
    /// MQTT over WebSocket over TLS (often port 8443 or 443).
    Wss,
}

impl ListenerKind {
    /// The name used in files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// Whether this kind runs TLS (and so needs `cert` and `key`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Whether this kind runs WebSocket (and so has a `ws_path`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// One listener of the `[[listener]]` form. Only `bind` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to accept connections on; port 0 picks a free one.
    pub bind: SocketAddr,
    /// `tcp` (default), `tls`, `ws` or `wss`.
    #[serde(default)]
    pub kind: ListenerKind,
    /// Name in logs and errors. Default: `KIND BIND`, as `tls 0.0.0.0:8883`.
    #[serde(default)]
    pub name: Option<String>,
    /// PEM file of the server's certificate chain, its own certificate
    /// first (`tls` and `wss` only; required there).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM file of the certificate's private key (`tls` and `wss` only;
    /// required there).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM file of the CA certificates that client certificates must chain
    /// to. With it, clients may present a certificate (mutual TLS).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Refuse a client without a valid certificate: its handshake fails.
    /// Needs `ca`. Default: false.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Use the client certificate's identity (its common name, or its first
    /// subject alternative name when it has none) as the user name of the
    /// client's CONNECT, replacing the one the client sent. Needs
    /// `require_client_cert`. Default: false.
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// HTTP path of the WebSocket upgrade (`ws` and `wss` only). Default:
    /// `/mqtt`.
    #[serde(default)]
    pub ws_path: Option<String>,
    /// Expect a PROXY protocol header (v1 or v2) at the start of every
    /// connection, and take the client's address from it; a connection
    /// without a valid one is closed. Default: false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Most connections open at once on this listener, in addition to the
    /// broker-wide `max_connections`; -1 means no limit. Default: -1.
    #[serde(default = "unlimited")]
    pub max_connections: i64,
    /// Whether clients without a user name may connect on this listener,
    /// overriding the broker-wide `allow_anonymous` for its connections
    /// (for example, anonymous access on a local plain listener but not on
    /// the public TLS one). Default: unset, the broker-wide setting.
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
}

fn unlimited() -> i64 {
    -1
}

impl ListenerConfig {
    /// A listener of `kind` on `bind` with every other setting at its
    /// default (TLS kinds still need `cert` and `key`).
    pub fn new(kind: ListenerKind, bind: SocketAddr) -> Self {
        Self {
            bind,
            kind,
            name: None,
            cert: None,
            key: None,
            ca: None,
            require_client_cert: false,
            use_identity_as_username: false,
            ws_path: None,
            proxy_protocol: false,
            max_connections: -1,
            allow_anonymous: None,
        }
    }

    /// `name`, or `KIND BIND` when not set.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{} {}", self.kind.as_str(), self.bind),
        }
    }

    /// `ws_path`, or `/mqtt` when not set.
    pub fn ws_path(&self) -> &str {
        self.ws_path.as_deref().unwrap_or(DEFAULT_WS_PATH)
    }

    /// `max_connections` as a limit: `None` when unlimited (negative).
    pub fn connection_limit(&self) -> Option<usize> {
        usize::try_from(self.max_connections).ok()
    }

    /// Checks the settings that need no file; the first problem is
    /// returned.
    pub fn validate(&self) -> Result<(), ListenerError> {
        let problem = |problem| ListenerError {
            listener: self.display_name(),
            problem,
        };
        let kind = self.kind.as_str();
        if self.name.as_deref().is_some_and(str::is_empty) {
            return Err(problem(ListenerProblem::EmptyName));
        }
        if self.kind.is_tls() {
            if self.cert.is_none() {
                return Err(problem(ListenerProblem::Missing { key: "cert", kind }));
            }
            if self.key.is_none() {
                return Err(problem(ListenerProblem::Missing { key: "key", kind }));
            }
        } else {
            let tls_only = [
                ("cert", self.cert.is_some()),
                ("key", self.key.is_some()),
                ("ca", self.ca.is_some()),
                ("require_client_cert", self.require_client_cert),
                ("use_identity_as_username", self.use_identity_as_username),
            ];
            if let Some((key, _)) = tls_only.into_iter().find(|(_, set)| *set) {
                return Err(problem(ListenerProblem::TlsOnly { key, kind }));
            }
        }
        if self.require_client_cert && self.ca.is_none() {
            return Err(problem(ListenerProblem::ClientCertWithoutCa));
        }
        if self.use_identity_as_username && !self.require_client_cert {
            return Err(problem(ListenerProblem::IdentityWithoutClientCert));
        }
        match &self.ws_path {
            Some(_) if !self.kind.is_websocket() => {
                return Err(problem(ListenerProblem::WsPathOnly { kind }));
            }
            Some(path) if !path.starts_with('/') || path.contains(char::is_whitespace) => {
                return Err(problem(ListenerProblem::WsPath(path.clone())));
            }
            _ => {}
        }
        if self.max_connections == 0 {
            return Err(problem(ListenerProblem::MaxConnections));
        }
        Ok(())
    }
}

/// A `[[listener]]` table that cannot work: which listener, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("listener {listener:?}: {problem}")]
pub struct ListenerError {
    /// The listener's name (or `KIND BIND`).
    pub listener: String,
    /// What is wrong, with the fix.
    pub problem: ListenerProblem,
}

/// What is wrong with a `[[listener]]` table, naming the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListenerProblem {
    /// `name = ""`.
    #[error(
        "name is empty: give the listener a name, or remove the key for the default \"KIND BIND\""
    )]
    EmptyName,
    /// A TLS listener without its certificate or key.
    #[error(
        "{key} is missing: a {kind} listener needs cert and key (PEM files of the server's certificate chain and its private key)"
    )]
    Missing {
        /// `cert` or `key`.
        key: &'static str,
        /// The listener's kind.
        kind: &'static str,
    },
    /// A TLS setting on a listener without TLS.
    #[error(
        "{key} is set but kind is \"{kind}\", which has no TLS: use kind = \"tls\" (or \"wss\"), or remove {key}"
    )]
    TlsOnly {
        /// The setting.
        key: &'static str,
        /// The listener's kind.
        kind: &'static str,
    },
    /// Client certificates required with nothing to check them against.
    #[error(
        "require_client_cert is true but ca is missing: set ca to the PEM file of the CA that signs client certificates"
    )]
    ClientCertWithoutCa,
    /// Identity as user name while clients may come without certificates.
    #[error(
        "use_identity_as_username is true but require_client_cert is false: set require_client_cert = true (and ca) so that every client has a certificate to take the name from"
    )]
    IdentityWithoutClientCert,
    /// `ws_path` on a listener without WebSocket.
    #[error(
        "ws_path is set but kind is \"{kind}\", which has no WebSocket: use kind = \"ws\" (or \"wss\"), or remove ws_path"
    )]
    WsPathOnly {
        /// The listener's kind.
        kind: &'static str,
    },
    /// A path that no request could have.
    #[error(
        "ws_path is {0:?}: give an HTTP path starting with '/' and without spaces, such as \"/mqtt\""
    )]
    WsPath(String),
    /// No connection could ever be accepted.
    #[error("max_connections is 0: set it to -1 for no limit, or to at least 1")]
    MaxConnections,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ListenerConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn tls() -> ListenerConfig {
        ListenerConfig {
            cert: Some("server.pem".into()),
            key: Some("server.key".into()),
            ..ListenerConfig::new(ListenerKind::Tls, "0.0.0.0:8883".parse().unwrap())
        }
    }

    #[test]
    fn only_bind_is_required_and_defaults_are_documented() {
        let listener = parse(r#"{"bind": "127.0.0.1:1883"}"#).unwrap();
        assert_eq!(
            listener,
            ListenerConfig::new(ListenerKind::Tcp, "127.0.0.1:1883".parse().unwrap())
        );
        assert_eq!(listener.display_name(), "tcp 127.0.0.1:1883");
        assert_eq!(listener.connection_limit(), None);
        assert_eq!(listener.validate(), Ok(()));
        assert_eq!(listener.allow_anonymous, None, "the broker-wide setting");
        let closed = parse(r#"{"bind": "0.0.0.0:8883", "allow_anonymous": false}"#).unwrap();
        assert_eq!(closed.allow_anonymous, Some(false));
        let ws = parse(r#"{"bind": "0.0.0.0:8080", "kind": "ws", "name": "web"}"#).unwrap();
        assert_eq!(ws.ws_path(), "/mqtt");
        assert_eq!(ws.display_name(), "web");
        assert!(
            parse(r#"{"kind": "tcp"}"#)
                .unwrap_err()
                .to_string()
                .contains("bind")
        );
        let typo = parse(r#"{"bind": "0.0.0.0:1", "certfile": "x"}"#).unwrap_err();
        assert!(typo.to_string().contains("certfile"), "{typo}");
        let kind = parse(r#"{"bind": "0.0.0.0:1", "kind": "quic"}"#).unwrap_err();
        assert!(kind.to_string().contains("quic"), "{kind}");
    }

    #[test]
    fn validation_names_the_listener_the_key_and_the_fix() {
        type Breaker = fn(&mut ListenerConfig);
        let cases: [(Breaker, &str); 10] = [
            (|l| l.cert = None, "cert is missing"),
            (|l| l.key = None, "key is missing"),
            (
                |l| l.require_client_cert = true,
                "require_client_cert is true but ca",
            ),
            (
                |l| {
                    l.ca = Some("ca.pem".into());
                    l.use_identity_as_username = true;
                },
                "use_identity_as_username is true but require_client_cert",
            ),
            (
                |l| l.ws_path = Some("/mqtt".into()),
                "ws_path is set but kind is \"tls\"",
            ),
            (
                |l| {
                    l.kind = ListenerKind::Wss;
                    l.ws_path = Some("mqtt".into());
                },
                "ws_path is \"mqtt\"",
            ),
            (|l| l.max_connections = 0, "max_connections is 0"),
            (|l| l.name = Some(String::new()), "name is empty"),
            (
                |l| {
                    l.kind = ListenerKind::Tcp;
                    l.key = None;
                },
                "cert is set but kind is \"tcp\"",
            ),
            (
                |l| {
                    *l = ListenerConfig::new(ListenerKind::Ws, l.bind);
                    l.ca = Some("ca.pem".into());
                },
                "ca is set but kind is \"ws\"",
            ),
        ];
        assert_eq!(tls().validate(), Ok(()));
        for (break_it, expected) in cases {
            let mut listener = tls();
            break_it(&mut listener);
            let message = listener.validate().unwrap_err().to_string();
            assert!(message.starts_with("listener \""), "{message}");
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
    }
}
