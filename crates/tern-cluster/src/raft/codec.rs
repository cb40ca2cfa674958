//! The one place that chooses how Raft data is serialised: log entries, the vote,
//! snapshots and the payloads of the gRPC calls all go through [`encode`] and
//! [`decode`].
//!
//! postcard: compact and fast, with opaque bytes (retained messages) written as
//! they are. It is not self-describing, so both ends must be builds with the same
//! types; a change of format needs a new RPC or store version.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises a value.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(CodecError)
}

/// Deserialises a value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(CodecError)
}

/// A value could not be encoded or decoded: a bug, a corrupt store or an
/// incompatible peer.
#[derive(Debug, thiserror::Error)]
#[error("cannot (de)serialise cluster data: {0}")]
pub struct CodecError(#[source] postcard::Error);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Command, Entry};

    #[test]
    fn commands_round_trip_with_opaque_bytes_kept_compact() {
        let commands = vec![
            Command::SetRetained {
                topic: "a/b".into(),
                message: bytes::Bytes::from(vec![0xAB; 1000]),
            },
            Command::ClaimClient {
                client_id: "c".into(),
                node: 7,
            },
        ];
        let encoded = encode(&commands).unwrap();
        assert!(
            encoded.len() < 1_100,
            "bytes are not inflated: {}",
            encoded.len()
        );
        let back: Vec<Command> = decode(&encoded).unwrap();
        assert_eq!(back, commands);
        assert!(decode::<Vec<Command>>(&encoded[..10]).is_err());
    }

    #[test]
    fn openraft_entries_round_trip() {
        let entry = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42),
            payload: openraft::EntryPayload::Normal(vec![Command::AddRoutes {
                node: 1,
                filters: vec!["x/#".into()],
            }]),
        };
        let back: Entry = decode(&encode(&entry).unwrap()).unwrap();
        assert_eq!(back.log_id, entry.log_id);
        assert!(matches!(back.payload, openraft::EntryPayload::Normal(ref c) if c.len() == 1));
    }
}
