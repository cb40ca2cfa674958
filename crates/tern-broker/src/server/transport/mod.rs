//! The transports under MQTT: what happens between the TCP accept and the
//! first MQTT byte, for every kind of listener. In order, each step
//! optional by listener: the PROXY protocol header (the client's real
//! address), the TLS handshake (the client certificate's identity), the
//! WebSocket upgrade. The result is a byte stream and a
//! [`ConnectionInfo`], handed to the one connection task generic over the
//! stream, so every listener runs the same protocol code.
//!
//! The steps together must finish within `connect_timeout`; a connection
//! that fails one is closed and logged with the listener's name, its
//! peer and what to do. Nothing here touches the broker's state.

pub(crate) mod proxy;
pub(crate) mod tls;
pub(crate) mod websocket;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::server::TlsStream;

use self::proxy::{Prefixed, ProxyReadError};
use self::tls::{ReloadableTls, TlsError, TlsFiles, certificate_identity};
use super::connection;
use super::parking::ParkingLot;
use crate::broker::{Broker, stopped};
use crate::config::{ListenerConfig, ListenerKind};

/// What the broker knows of a connection beyond its bytes.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    /// The client's address: from the PROXY header when the listener
    /// expects one, else the socket's peer.
    pub peer: SocketAddr,
    /// The name of the listener it came through.
    pub listener: Arc<str>,
    /// The identity of its verified TLS client certificate, if any.
    pub identity: Option<String>,
    /// Replace the CONNECT's user name with `identity`.
    pub identity_as_username: bool,
    /// The listener's `allow_anonymous`, overriding the broker-wide one
    /// when set.
    pub allow_anonymous: Option<bool>,
}

impl ConnectionInfo {
    /// The user name to put in the client's CONNECT, if the listener
    /// takes it from the certificate.
    pub(crate) fn username_override(&self) -> Option<&str> {
        self.identity
            .as_deref()
            .filter(|_| self.identity_as_username)
    }
}

/// One listener as the runtime needs it: its settings and its state
/// (TLS configuration, connection slots).
#[derive(Debug)]
pub(crate) struct Listener {
    pub name: Arc<str>,
    pub kind: ListenerKind,
    pub proxy_protocol: bool,
    pub ws_path: String,
    pub use_identity_as_username: bool,
    /// Its own `allow_anonymous`, if set.
    pub allow_anonymous: Option<bool>,
    /// Present for `tls` and `wss`.
    pub tls: Option<ReloadableTls>,
    /// This listener's own `max_connections`, if limited.
    pub slots: Option<Arc<Semaphore>>,
    pub max_connections: i64,
}

impl Listener {
    /// A plain TCP listener of the `listeners` form.
    pub(crate) fn plain(bind: SocketAddr) -> Self {
        Self::from_config(&ListenerConfig::new(ListenerKind::Tcp, bind))
            .expect("a plain TCP listener reads no file")
    }

    /// Builds a listener from its table, reading its certificate files.
    pub(crate) fn from_config(config: &ListenerConfig) -> Result<Self, TlsError> {
        let tls = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) if config.kind.is_tls() => {
                Some(ReloadableTls::load(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: config.ca.clone(),
                    require_client_cert: config.require_client_cert,
                })?)
            }
            _ => None,
        };
        Ok(Self {
            name: config.display_name().into(),
            kind: config.kind,
            proxy_protocol: config.proxy_protocol,
            ws_path: config.ws_path().to_owned(),
            use_identity_as_username: config.use_identity_as_username,
            allow_anonymous: config.allow_anonymous,
            tls,
            slots: config
                .connection_limit()
                .map(|limit| Arc::new(Semaphore::new(limit))),
            max_connections: config.max_connections,
        })
    }

    /// Re-reads the certificate files, if this listener has TLS.
    pub(crate) fn reload_tls(&self) -> Option<Result<(), TlsError>> {
        self.tls.as_ref().map(ReloadableTls::reload)
    }
}

/// The streams of the four kinds of listener.
///
/// The TLS and WebSocket streams are boxed: a connection's stream lives
/// inside its connection state, and a WebSocket over TLS inline would
/// make every TLS connection carry a WebSocket's room, for the price of
/// one indirection per read and write (docs/performance.md, "Idle
/// connections").
enum Established {
    Tcp(Prefixed<TcpStream>),
    Tls(Box<TlsStream<Prefixed<TcpStream>>>),
    Ws(Box<websocket::WsStream<Prefixed<TcpStream>>>),
    Wss(Box<websocket::WsStream<TlsStream<Prefixed<TcpStream>>>>),
}

/// Why a connection was closed before MQTT.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error(
        "{0}; this listener has proxy_protocol = true: connect through the load balancer that \
         sends the header, or set proxy_protocol = false"
    )]
    Proxy(ProxyReadError),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error(
        "the client certificate has neither a common name nor a subject alternative name, and \
         use_identity_as_username needs one: issue the client a certificate with a CN"
    )]
    NoIdentity,
    #[error("WebSocket upgrade failed: {0}")]
    WebSocket(tokio_tungstenite::tungstenite::Error),
    #[error(
        "the PROXY header, TLS handshake or WebSocket upgrade did not complete within \
         connect_timeout ({0} s): the client is too slow or speaks another protocol"
    )]
    Timeout(u64),
}

/// A connection past its handshakes, ready to speak MQTT: the future of
/// [`connection::serve`] for its kind of stream, boxed so that it is
/// allocated at its own size (a plain TCP connection does not carry the
/// room of a TLS one) and so that the task around it stays a pointer.
pub(crate) type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the listener's handshakes on an accepted socket (PROXY header,
/// TLS, WebSocket upgrade) within `connect_timeout`, and returns the
/// connection ready to serve; `None` if a handshake failed (logged) or the
/// server shuts down.
///
/// The caller boxes this future: it is over once the connection runs, and
/// a TLS handshake's state is several times an idle connection's.
pub(crate) async fn accept(
    broker: Arc<Broker>,
    listener: Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
    permits: Box<[OwnedSemaphorePermit]>,
) -> Option<Serving> {
    let seconds = broker.config.connect_timeout;
    let handshakes = tokio::time::timeout(
        Duration::from_secs(seconds),
        establish(&listener, &broker, stream, peer),
    );
    let established = tokio::select! {
        established = handshakes => established,
        () = stopped(&mut shutdown) => return None,
    };
    let (stream, info) = match established {
        Ok(Ok(established)) => established,
        Ok(Err(error)) => {
            log_refusal(&listener, peer, &error);
            return None;
        }
        Err(_elapsed) => {
            log_refusal(&listener, peer, &HandshakeError::Timeout(seconds));
            return None;
        }
    };
    // Only plain TCP connections park (see `MqttStream::parking_fd`).
    Some(match stream {
        Established::Tcp(stream) => Box::pin(connection::serve(
            broker, stream, info, shutdown, lot, permits,
        )),
        Established::Tls(stream) => Box::pin(connection::serve(
            broker, stream, info, shutdown, None, permits,
        )),
        Established::Ws(stream) => Box::pin(connection::serve(
            broker, stream, info, shutdown, None, permits,
        )),
        Established::Wss(stream) => Box::pin(connection::serve(
            broker, stream, info, shutdown, None, permits,
        )),
    })
}

fn log_refusal(listener: &Listener, peer: SocketAddr, error: &HandshakeError) {
    match error {
        // Health checks connect and close without a byte.
        HandshakeError::Proxy(ProxyReadError::Empty) => {
            tracing::debug!(listener = %listener.name, %peer, "connection closed: {error}");
        }
        // A listener behind a balancer must never see clients directly.
        HandshakeError::Proxy(_) => {
            tracing::warn!(listener = %listener.name, %peer, "connection closed: {error}");
        }
        _ => tracing::info!(listener = %listener.name, %peer, "connection closed: {error}"),
    }
}

async fn establish(
    listener: &Listener,
    broker: &Broker,
    stream: TcpStream,
    socket_peer: SocketAddr,
) -> Result<(Established, ConnectionInfo), HandshakeError> {
    let (peer, stream) = if listener.proxy_protocol {
        let (source, stream) = proxy::read_header(stream)
            .await
            .map_err(HandshakeError::Proxy)?;
        (source.unwrap_or(socket_peer), stream)
    } else {
        (socket_peer, Prefixed::new(Default::default(), stream))
    };
    let mut info = ConnectionInfo {
        peer,
        listener: Arc::clone(&listener.name),
        identity: None,
        identity_as_username: listener.use_identity_as_username,
        allow_anonymous: listener.allow_anonymous,
    };
    let max_message = usize::try_from(broker.config.max_packet_size)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let established = match (&listener.tls, listener.kind) {
        (Some(tls), ListenerKind::Tls | ListenerKind::Wss) => {
            let stream = tls
                .acceptor()
                .accept(stream)
                .await
                .map_err(HandshakeError::Tls)?;
            let (_, session) = stream.get_ref();
            info.identity = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|certificate| certificate_identity(certificate));
            if info.identity_as_username && info.identity.is_none() {
                return Err(HandshakeError::NoIdentity);
            }
            if listener.kind == ListenerKind::Wss {
                let stream = websocket::accept(stream, &listener.ws_path, max_message)
                    .await
                    .map_err(HandshakeError::WebSocket)?;
                Established::Wss(Box::new(stream))
            } else {
                Established::Tls(Box::new(stream))
            }
        }
        (_, ListenerKind::Ws) => {
            let stream = websocket::accept(stream, &listener.ws_path, max_message)
                .await
                .map_err(HandshakeError::WebSocket)?;
            Established::Ws(Box::new(stream))
        }
        _ => Established::Tcp(stream),
    };
    Ok((established, info))
}

/// What a stream must offer to carry MQTT.
pub(crate) trait MqttStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether [`poll_read_ready`](Self::poll_read_ready) tells when a
    /// read would not wait. Then the connection allocates its receive
    /// buffer only once bytes are there, so an idle connection holds none.
    /// TLS and WebSocket streams cannot tell: they decode records and
    /// frames inside their reads, which need room up front.
    const READINESS: bool = false;

    /// Ready when a read would not wait; only meaningful with
    /// [`READINESS`](Self::READINESS).
    fn poll_read_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket to watch while the connection is parked
    /// (`server::parking`), if it may park now: only a plain TCP socket
    /// with no bytes put back before it. TLS and WebSocket streams hold
    /// state (records, frames) that a bare socket cannot.
    fn parking_fd(&self) -> Option<RawFd> {
        None
    }

    /// The socket, taken from the runtime, for the parked connection.
    /// Called only after [`parking_fd`](Self::parking_fd) gave one. On
    /// failure the socket is closed.
    fn into_socket(self) -> io::Result<std::net::TcpStream>
    where
        Self: Sized,
    {
        Err(io::Error::other("only a plain TCP socket can be parked"))
    }
}

impl MqttStream for Prefixed<TcpStream> {
    const READINESS: bool = true;

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Prefixed::poll_read_ready(self, cx)
    }

    fn parking_fd(&self) -> Option<RawFd> {
        self.is_drained().then(|| self.get_ref().as_raw_fd())
    }

    fn into_socket(self) -> io::Result<std::net::TcpStream> {
        self.into_inner().into_std()
    }
}

impl MqttStream for Box<TlsStream<Prefixed<TcpStream>>> {}
impl MqttStream for Box<websocket::WsStream<Prefixed<TcpStream>>> {}
impl MqttStream for Box<websocket::WsStream<TlsStream<Prefixed<TcpStream>>>> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_replaces_the_user_name_only_when_the_listener_says_so() {
        let mut info = ConnectionInfo {
            peer: "203.0.113.7:51234".parse().unwrap(),
            listener: "devices".into(),
            identity: Some("device-17".into()),
            identity_as_username: false,
            allow_anonymous: None,
        };
        assert_eq!(info.username_override(), None);
        info.identity_as_username = true;
        assert_eq!(info.username_override(), Some("device-17"));
        info.identity = None;
        assert_eq!(info.username_override(), None);
    }
}
