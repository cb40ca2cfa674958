//! Why a bench connection failed. These are counted per connection and
//! reported; only the command's edge turns them into `anyhow` errors.

use std::io;
use std::net::SocketAddr;

use tern_client::{CommandError, ProtocolError};
use tern_codec::{EncodeError, ReasonCode, TopicError};
use thiserror::Error;

/// A failure of one bench connection.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A socket could not be created or configured.
    #[error("socket: {0}")]
    Socket(io::Error),
    /// Binding the source address failed.
    #[error("could not bind source address {0}: {1}")]
    Bind(SocketAddr, io::Error),
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The TLS handshake failed (an untrusted certificate, a name that does
    /// not match, a broker that does not speak TLS on that port).
    #[error("TLS handshake: {0}{hint}", hint = crate::tls::tls_hint(.0))]
    Tls(io::Error),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(io::Error),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The broker refused the connection.
    #[error("the broker refused the connection: {0}")]
    Refused(ReasonCode),
    /// The broker refused the subscription.
    #[error("the broker refused the subscription: {0}")]
    SubscribeRefused(ReasonCode),
    /// The broker sent DISCONNECT.
    #[error("the broker disconnected: {0}")]
    Disconnected(ReasonCode),
    /// The broker broke the protocol.
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The session refused a command (for example QoS above the broker's maximum).
    #[error(transparent)]
    Command(CommandError),
    /// A packet could not be encoded.
    #[error("encode: {0}")]
    Encode(EncodeError),
    /// A topic filter is not valid.
    #[error("invalid topic filter {0:?}: {1}")]
    Filter(String, TopicError),
}
