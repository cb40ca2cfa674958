//! [`SharedAuthorizer`]: the users, ACL and policy in force, replaced whole
//! when the password or ACL file is reloaded (SIGHUP).
//!
//! Connections keep an `Arc` of the authorizer they use and compare a
//! generation number before each protocol step, so a reload reaches every
//! connection at its next input without any lock on the hot path beyond
//! one atomic load. The files are read and parsed before the swap: a bad
//! file leaves the old rules in force.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tern_auth::{Authorizer, FileError};

/// The authorizer in force; see the module docs.
#[derive(Debug)]
pub(crate) struct SharedAuthorizer {
    current: RwLock<Arc<Authorizer>>,
    generation: AtomicU64,
}

impl SharedAuthorizer {
    pub(crate) fn new(authorizer: Authorizer) -> Self {
        Self {
            current: RwLock::new(Arc::new(authorizer)),
            generation: AtomicU64::new(0),
        }
    }

    /// The authorizer in force now.
    pub(crate) fn current(&self) -> Arc<Authorizer> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Changes with every successful reload.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the files again and, if they are valid, puts them in force.
    /// Blocking (file I/O): call it off the async worker threads.
    pub(crate) fn reload(&self) -> Result<Arc<Authorizer>, FileError> {
        let fresh = Arc::new(self.current().reload()?);
        match self.current.write() {
            Ok(mut current) => *current = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        self.generation.fetch_add(1, Ordering::Release);
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use tern_auth::{Access, AuthSettings, Client};

    use super::*;

    #[test]
    fn a_bad_file_keeps_the_old_rules() {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "topic write a\n").unwrap();
        let settings = AuthSettings {
            acl_file: Some(acl.clone()),
            ..AuthSettings::default()
        };
        let shared = SharedAuthorizer::new(Authorizer::new(settings).unwrap());
        let client = Client {
            user: None,
            client_id: "c",
        };
        let allowed = |shared: &SharedAuthorizer, topic| {
            shared.current().authorize(client, Access::Write, topic)
        };
        assert!(allowed(&shared, "a"));
        std::fs::write(&acl, "topic write b\n").unwrap();
        shared.reload().unwrap();
        assert_eq!(shared.generation(), 1);
        assert!(!allowed(&shared, "a") && allowed(&shared, "b"));
        std::fs::write(&acl, "topic wirte,read b\n").unwrap();
        let error = shared.reload().unwrap_err().to_string();
        assert!(error.contains("acl:1:"), "{error}");
        assert_eq!(shared.generation(), 1);
        assert!(allowed(&shared, "b"), "the old rules stay");
    }
}
