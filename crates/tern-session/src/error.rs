//! The errors of this crate. Each message says what is wrong and what to do.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tern_codec::{ByteString, PacketId, ReasonCode};
use thiserror::Error;

use crate::session::{Acknowledgement, InFlightState};

/// A client broke the QoS 1/2 exchange rules of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The acknowledged packet identifier has no message in flight.
    #[error(
        "the client sent {ack:?} for packet identifier {packet_id}, which has no message in \
         flight; answer with reason code 0x92 (packet identifier not found)"
    )]
    PacketIdNotFound {
        /// The identifier acknowledged.
        packet_id: PacketId,
        /// The acknowledgement received.
        ack: Acknowledgement,
    },
    /// The acknowledgement does not fit the state of the exchange.
    #[error(
        "the client sent {ack:?} for packet identifier {packet_id}, which is {state:?}; this is \
         a protocol error: disconnect with reason code 0x82 (protocol error)"
    )]
    UnexpectedAck {
        /// The identifier acknowledged.
        packet_id: PacketId,
        /// The state of the exchange.
        state: InFlightState,
        /// The acknowledgement received.
        ack: Acknowledgement,
    },
}

impl SessionError {
    /// The MQTT 5 reason code to answer or disconnect with.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketIdNotFound { .. } => ReasonCode::PacketIdentifierNotFound,
            Self::UnexpectedAck { .. } => ReasonCode::ProtocolError,
        }
    }
}

/// A session store failed or refused an operation.
///
/// `Clone` because one failed group commit is reported to every writer in
/// the group.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The file system refused an operation on the data directory.
    #[error(
        "cannot {action} {path}: {source}; check that the path is a directory this process can \
         create and write, on a disk that is neither full nor read-only"
    )]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Another process has the data directory open.
    #[error(
        "the data directory {path} is locked by another process; stop the other broker using \
         it, or give this one its own data directory"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory's files are damaged.
    #[error(
        "the data directory {path} is corrupt: {detail}; restore it from a backup, or move it \
         aside to start with no stored sessions"
    )]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The data directory was written with another schema version.
    #[error(
        "the data directory {path} holds session store schema version {found}, but this build \
         reads version {expected}; run the Tern release that wrote it, or move the directory \
         aside to start with no stored sessions"
    )]
    UnknownSchemaVersion {
        /// The data directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A stored record cannot be decoded.
    #[error(
        "the stored record {key} cannot be read: {detail}; the store is damaged: restore the \
         data directory from a backup"
    )]
    CorruptRecord {
        /// The record's key, printable.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The store's indexes and records disagree (found by `verify`).
    #[error(
        "the session store is inconsistent: {0}; restore the data directory from a backup, \
         and report this as a bug"
    )]
    Inconsistent(String),
    /// A write names a client that has no stored session.
    #[error(
        "write refused: {op} for client {client_id:?}, which has no stored session; store the \
         session (Op::PutSession) before its messages. Nothing of this write was applied"
    )]
    UnknownSession {
        /// The client.
        client_id: ByteString,
        /// The operation refused.
        op: &'static str,
    },
    /// A write holds a value that cannot be stored.
    #[error("write refused: {0}. Nothing of this write was applied")]
    InvalidWrite(String),
    /// The storage engine reported an internal failure.
    #[error(
        "the storage engine failed: {0}; the store may be damaged: restart the broker, and if \
         this persists restore the data directory from a backup"
    )]
    Engine(String),
    /// Another node of the cluster did not confirm a write it was asked to
    /// make (a forwarded message): it failed, or could not be reached.
    #[error(
        "node {node} did not confirm the write: {detail}; the client's message was not \
         acknowledged, so it will publish it again"
    )]
    Remote {
        /// The node asked.
        node: u64,
        /// What went wrong.
        detail: String,
    },
    /// The store was closed, or its writer thread stopped.
    #[error(
        "the session store is closed (its writer thread stopped: after close, or after a \
         failure reported in the log); restart the broker"
    )]
    Closed,
}

impl StoreError {
    /// Names `path` in an I/O or corruption error raised where the data
    /// directory was not known.
    pub(crate) fn at_path(mut self, data_dir: &std::path::Path) -> Self {
        if let Self::Io { path, .. } | Self::Corrupt { path, .. } = &mut self
            && path.as_os_str().is_empty()
        {
            *path = data_dir.to_path_buf();
        }
        self
    }

    /// An I/O error while doing `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}
