//! The one place that chooses how Raft data is serialised: log entries, the vote,
//! snapshots and the payloads of the gRPC calls all go through [`encode`] and
//! [`decode`]. serde_json for now: it is in the stack and openraft's types derive
//! serde; a compact format can replace it here alone.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises a value.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(CodecError)
}

/// Deserialises a value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(CodecError)
}

/// A value could not be encoded or decoded: a bug, a corrupt store or an
/// incompatible peer.
#[derive(Debug, thiserror::Error)]
#[error("cannot (de)serialise cluster data: {0}")]
pub struct CodecError(#[source] serde_json::Error);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Command;

    #[test]
    fn commands_round_trip() {
        let commands = vec![
            Command::SetRetained {
                topic: "a/b".into(),
                message: bytes::Bytes::from_static(b"\0\x01xyz"),
            },
            Command::ClaimClient {
                client_id: "c".into(),
                node: 7,
            },
        ];
        let back: Vec<Command> = decode(&encode(&commands).unwrap()).unwrap();
        assert_eq!(back, commands);
        assert!(decode::<Vec<Command>>(b"{").is_err());
    }
}
