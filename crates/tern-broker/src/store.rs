//! The session store, chosen once at start-up: [`SledStore`] in the data
//! directory, or [`MemoryStore`] when the configuration keeps everything in
//! memory. An enum rather than a trait object: the choice is made in one
//! place and never changes while the broker runs.

use std::path::Path;

use tern_codec::ByteString;
use tern_session::{
    Expired, MemoryStore, Message, Op, Pending, SessionStore, SledConfig, SledStore, StoreError,
    StoreSummary, StoredSession, Timestamp,
};

use crate::config::BrokerConfig;

/// The broker's session store; see the module docs.
#[derive(Debug)]
pub(crate) enum Store {
    /// Nothing survives a restart.
    Memory(MemoryStore),
    /// On disk, in the data directory.
    Sled(SledStore),
}

impl Store {
    /// Opens the store `config` asks for. Blocking: call it off the async
    /// runtime's worker threads.
    pub(crate) fn open(config: &BrokerConfig) -> Result<Self, StoreError> {
        match &config.data_dir {
            None => Ok(Self::Memory(MemoryStore::new())),
            Some(path) => Self::open_sled(path, config),
        }
    }

    fn open_sled(path: &Path, config: &BrokerConfig) -> Result<Self, StoreError> {
        let sled_config = SledConfig {
            durability: config.durability.to_store(),
            ..SledConfig::default()
        };
        Ok(Self::Sled(SledStore::open(path, sled_config)?))
    }

    /// Flushes and releases the store (the data directory's lock).
    /// Blocking.
    pub(crate) fn close(self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Sled(store) => store.close(),
        }
    }

    fn inner(&self) -> &dyn SessionStore {
        match self {
            Self::Memory(store) => store,
            Self::Sled(store) => store,
        }
    }
}

impl SessionStore for Store {
    fn write(&self, ops: Vec<Op>) -> Pending<()> {
        self.inner().write(ops)
    }

    fn expire(&self, now: Timestamp) -> Pending<Expired> {
        self.inner().expire(now)
    }

    fn flush(&self) -> Pending<()> {
        self.inner().flush()
    }

    fn ready(&self) -> Pending<()> {
        self.inner().ready()
    }

    fn load_session(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError> {
        self.inner().load_session(client_id)
    }

    fn client_ids(&self) -> Result<Vec<ByteString>, StoreError> {
        self.inner().client_ids()
    }

    fn retained(&self) -> Result<Vec<Message>, StoreError> {
        self.inner().retained()
    }

    fn verify(&self) -> Result<StoreSummary, StoreError> {
        self.inner().verify()
    }
}
