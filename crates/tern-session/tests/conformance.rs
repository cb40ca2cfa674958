//! The conformance suite, run against the memory store and the sled store
//! (with each durability setting).

use std::time::Duration;

use tempfile::TempDir;
use tern_session::conformance::Harness;
use tern_session::{Durability, MemoryStore, SledConfig, SledStore};

struct Memory;

impl Harness for Memory {
    type Store = MemoryStore;

    fn open(&mut self) -> MemoryStore {
        MemoryStore::new()
    }

    fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
        store
    }
}

struct Sled {
    dir: TempDir,
    config: SledConfig,
}

impl Sled {
    fn new(durability: Durability) -> Self {
        let config = SledConfig {
            durability,
            cache_capacity: 8 * 1024 * 1024,
            ..SledConfig::default()
        };
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            config,
        }
    }
}

impl Harness for Sled {
    type Store = SledStore;

    fn open(&mut self) -> SledStore {
        SledStore::open(self.dir.path().join("data"), self.config).expect("open")
    }

    fn reopen(&mut self, store: SledStore) -> SledStore {
        store.close().expect("close");
        self.open()
    }
}

mod memory {
    tern_session::session_store_conformance!(super::Memory);
}

mod sled_flush {
    tern_session::session_store_conformance!(super::Sled::new(tern_session::Durability::Flush));
}

mod sled_periodic {
    tern_session::session_store_conformance!(super::Sled::new(tern_session::Durability::Periodic(
        super::Duration::from_millis(5)
    )));
}

mod sled_none {
    tern_session::session_store_conformance!(super::Sled::new(tern_session::Durability::None));
}
