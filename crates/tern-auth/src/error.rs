//! The errors of tern-auth: each says what was wrong and what to do.

use std::path::PathBuf;

use thiserror::Error;

/// A stored password that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    /// No `$kind$` prefix.
    #[error(
        "not a password hash: expected $7$ (mosquitto_passwd), $6$ (old mosquitto_passwd) or \
         $scram-sha-256$ (tern passwd); create the entry with `tern passwd FILE USER`"
    )]
    NotAHash,
    /// A prefix nobody writes.
    #[error(
        "unknown hash kind ${0}$: only $7$, $6$ and $scram-sha-256$ are supported; set the \
         password again with `tern passwd FILE USER`"
    )]
    UnknownKind(String),
    /// The right prefix, the wrong number of `$` fields.
    #[error(
        "a ${0}$ hash with the wrong number of $-separated fields: the line is truncated or \
         edited; set the password again with `tern passwd FILE USER`"
    )]
    Fields(String),
    /// Iterations not a number in range.
    #[error(
        "iterations {0:?} is not a number between 1 and 10000000; set the password again with \
         `tern passwd FILE USER`"
    )]
    Iterations(String),
    /// A field that is not standard base64.
    #[error("the {0} is not valid base64; set the password again with `tern passwd FILE USER`")]
    Base64(&'static str),
    /// A field of the wrong size.
    #[error(
        "the {field} must decode to {expected} bytes; set the password again with \
         `tern passwd FILE USER`"
    )]
    Length {
        /// Which field.
        field: &'static str,
        /// Its size.
        expected: usize,
    },
    /// The system's random generator failed.
    #[error("cannot draw a random salt from the operating system: {0}")]
    Random(String),
}

/// A password or ACL file that cannot be used (or the random source the
/// authorizer needs). Line numbers start at 1.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file cannot be written.
    #[error("cannot write {path}: {source}; check the directory exists and is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of a password file.
    #[error("{path}:{line}: {message}")]
    Password {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong and the fix.
        message: String,
    },
    /// The operating system's random generator failed.
    #[error(
        "cannot draw random bytes from the operating system ({0}); check that /dev/urandom or \
         getrandom(2) is available"
    )]
    Random(String),
    /// A line of an ACL file.
    #[error("{path}:{line}: {message}")]
    Acl {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong and the fix.
        message: String,
    },
}
