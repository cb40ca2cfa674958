//! What a connection task does for authentication: run a password check
//! off the async threads, and log a refusal.

use std::sync::Arc;

use bytes::Bytes;
use tern_auth::{Authorizer, Refusal};
use tern_codec::ByteString;

use crate::protocol::Denial;

/// Checks `user`'s password on tokio's blocking pool: a PBKDF2 derivation
/// takes milliseconds, which would stall every connection of a worker.
pub(super) async fn check_password(
    authorizer: Arc<Authorizer>,
    user: ByteString,
    password: Option<Bytes>,
) -> Result<(), Refusal> {
    let checked = tokio::task::spawn_blocking(move || {
        authorizer.check_password(Some(&user), password.as_deref())
    })
    .await;
    checked.unwrap_or_else(|error| {
        tracing::error!(%error, "the password check failed; this is a bug, please report it");
        Err(Refusal::BadCredentials(String::new()))
    })
}

/// Logs a refusal: CONNECT refusals at `info` (an operator wants to see
/// failed logins), the rest at `debug` (a misconfigured client may repeat
/// them at its publishing rate; `$SYS` counts them).
pub(super) fn log_denial(denial: Denial, detail: &str, user: Option<&ByteString>) {
    let user = user.map(|user| &**user);
    match denial {
        Denial::Connect | Denial::Will => tracing::info!(?denial, user, "refused: {detail}"),
        Denial::Publish | Denial::Subscribe | Denial::Limit => {
            tracing::debug!(?denial, user, "refused: {detail}");
        }
    }
}
