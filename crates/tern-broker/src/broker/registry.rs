//! The session registry: every live session, by client identifier (for
//! CONNECT) and by [`SessionKey`] (for routing), each in a [`SessionCell`].
//!
//! Ownership and locks:
//! - the registry's maps own the cells; a connection task and routing
//!   hold `Arc`s to them only while working;
//! - `SessionCell::session` (a `std::sync::Mutex`) is held for short,
//!   synchronous sections: a protocol step, an enqueue. Whoever changes a
//!   session drains its changes (`Session::take_changes`) and submits them
//!   to the store *under that lock*, so the store sees each session's
//!   operations in the order they happened;
//! - `SessionCell::attachment` (a `tokio::sync::Mutex`) serialises who is
//!   attached: a CONNECT taking the session over, the connection ending,
//!   housekeeping removing an expired session. It is held across the wait
//!   for a taken-over connection to finish, never across socket I/O;
//! - lock order: registry maps, then attachment, then session;
//! - an idle connection may park (no task: `server::parking`); then
//!   whoever queues work for it (a message to deliver, a takeover) wakes
//!   it through [`ParkedWakes`], reading the cell's parking token under
//!   the session lock, under which the connection set it and checked
//!   that nothing waited: a wake-up and a park cannot miss each other.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use hashbrown::{HashTable, hash_table};
use tern_codec::ByteString;
use tern_session::Session;
use tokio::sync::{Notify, oneshot};

/// The router's name for a session: small, copyable, never reused while
/// the broker runs.
pub(crate) type SessionKey = u64;

/// The connection attached to a session, as another connection taking
/// the session over sees it.
#[derive(Debug)]
pub(crate) struct Attachment {
    /// The attached connection.
    pub connection_id: u64,
    /// Sending on it asks the connection to end (takeover).
    pub kick: Option<oneshot::Sender<()>>,
    /// Completes (the sender is dropped) once the connection is done with
    /// the session.
    pub done: Option<oneshot::Receiver<()>>,
}

impl Attachment {
    /// Asks the attached connection to end (once), waking it if it is
    /// parked.
    pub(crate) fn kick(&mut self, cell: &SessionCell, wakes: &ParkedWakes) {
        if let Some(kick) = self.kick.take() {
            let _gone = kick.send(());
            wakes.wake_connection(cell);
        }
    }
}

/// One session and what its connection needs; see the module docs.
#[derive(Debug)]
pub(crate) struct SessionCell {
    /// The session's key in the router.
    pub key: SessionKey,
    /// The client identifier.
    pub client_id: ByteString,
    session: Mutex<Session>,
    /// Wakes the attached connection: messages were queued.
    pub notify: Notify,
    /// The connection attached, if any.
    pub attachment: tokio::sync::Mutex<Option<Attachment>>,
    /// The connection attached (0: none), set with `attachment`, readable
    /// without its lock.
    attached_to: AtomicU64,
    /// Set (under the attachment lock) once the cell left the registry.
    removed: AtomicBool,
    /// The parking lot's token of the attached connection while it is
    /// parked, else [`NOT_PARKED`]; written and read under the session
    /// lock (see the module docs).
    parked: AtomicUsize,
}

/// The parking token of a cell whose connection is not parked.
const NOT_PARKED: usize = usize::MAX;

impl SessionCell {
    fn new(key: SessionKey, session: Session) -> Self {
        Self {
            key,
            client_id: session.client_id().clone(),
            session: Mutex::new(session),
            notify: Notify::new(),
            attachment: tokio::sync::Mutex::new(None),
            attached_to: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            parked: AtomicUsize::new(NOT_PARKED),
        }
    }

    /// Records that the attached connection is parked under `token`
    /// (`None`: it runs again). Takes the session's guard: see the module
    /// docs.
    pub(crate) fn set_parked(&self, _session: &MutexGuard<'_, Session>, token: Option<usize>) {
        self.parked
            .store(token.unwrap_or(NOT_PARKED), Ordering::Relaxed);
    }

    /// The token of the attached connection if it is parked. Takes the
    /// session's guard: see the module docs.
    pub(crate) fn parked(&self, _session: &MutexGuard<'_, Session>) -> Option<usize> {
        let token = self.parked.load(Ordering::Relaxed);
        (token != NOT_PARKED).then_some(token)
    }

    /// The session, for one short synchronous section. A panic while the
    /// lock was held would be a bug; the poison flag is ignored rather
    /// than turned into a panic of every later user.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records which connection is attached (0: none). Call with the
    /// attachment lock held.
    pub(crate) fn set_attached(&self, connection_id: u64) {
        self.attached_to.store(connection_id, Ordering::Release);
    }

    /// True while `connection_id` is the attached connection. A connection
    /// that is no longer attached (taken over) must not touch the session.
    pub(crate) fn is_attached_to(&self, connection_id: u64) -> bool {
        self.attached_to.load(Ordering::Acquire) == connection_id
    }

    /// True once the cell left the registry: a connection must not attach.
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

/// The tokens of parked connections that have work, for the parking lot
/// (`server::parking`) to resume them.
#[derive(Debug, Default)]
pub(crate) struct ParkedWakes {
    tokens: Mutex<Vec<usize>>,
    /// Notified after tokens were added.
    pub notify: Notify,
}

impl ParkedWakes {
    /// Asks for the connection parked under `token` to be resumed.
    pub(crate) fn wake(&self, token: usize) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(token);
        self.notify.notify_one();
    }

    /// Wakes the connection attached to `cell` if it is parked: after
    /// something it must see was queued outside its session (a
    /// takeover's kick, [`Attachment::kick`]). Deliveries are woken by
    /// `Broker::enqueue`.
    fn wake_connection(&self, cell: &SessionCell) {
        let parked = cell.parked(&cell.lock());
        if let Some(token) = parked {
            self.wake(token);
        }
    }

    /// The tokens asked for since the last call.
    pub(crate) fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.tokens.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Cells found by a key each cell carries (its client identifier, its
/// router key): a hash table of the cells alone, so that an entry is one
/// pointer rather than a copy of the key beside it (every client, idle or
/// not, has an entry in both indexes). SipHash with a random key, as in
/// `HashMap`: client identifiers come from clients.
struct Index<K: ?Sized + 'static> {
    cells: HashTable<Arc<SessionCell>>,
    hasher: RandomState,
    key_of: fn(&SessionCell) -> &K,
}

impl<K: Hash + Eq + ?Sized> Index<K> {
    fn new(key_of: fn(&SessionCell) -> &K) -> Self {
        Self {
            cells: HashTable::new(),
            hasher: RandomState::new(),
            key_of,
        }
    }

    fn get(&self, key: &K) -> Option<&Arc<SessionCell>> {
        let key_of = self.key_of;
        self.cells
            .find(self.hasher.hash_one(key), |cell| key_of(cell) == key)
    }

    /// Adds `cell`, returning the cell it replaces under the same key.
    fn insert(&mut self, cell: Arc<SessionCell>) -> Option<Arc<SessionCell>> {
        let Self {
            cells,
            hasher,
            key_of,
        } = self;
        let key = key_of(&cell);
        let entry = cells.entry(
            hasher.hash_one(key),
            |other| key_of(other) == key,
            |other| hasher.hash_one(key_of(other)),
        );
        match entry {
            hash_table::Entry::Occupied(mut occupied) => {
                Some(std::mem::replace(occupied.get_mut(), cell))
            }
            hash_table::Entry::Vacant(vacant) => {
                vacant.insert(cell);
                None
            }
        }
    }

    /// Removes `cell` if it is the one under its key.
    fn remove(&mut self, cell: &Arc<SessionCell>) {
        let key_of = self.key_of;
        let hash = self.hasher.hash_one(key_of(cell));
        if let Ok(entry) = self
            .cells
            .find_entry(hash, |other| Arc::ptr_eq(other, cell))
        {
            entry.remove();
        }
    }
}

impl<K: ?Sized> std::fmt::Debug for Index<K> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Index")
            .field("len", &self.cells.len())
            .finish_non_exhaustive()
    }
}

/// Sessions by client identifier and by key; see the module docs.
#[derive(Debug)]
pub(crate) struct Registry {
    by_client: Mutex<Index<str>>,
    by_key: RwLock<Index<SessionKey>>,
    next_key: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            by_client: Mutex::new(Index::new(|cell| &*cell.client_id)),
            by_key: RwLock::new(Index::new(|cell| &cell.key)),
            next_key: AtomicU64::new(0),
        }
    }
}

impl Registry {
    /// The cell of `client_id`, created with `create()` if there is none.
    /// True if it was created.
    pub(crate) fn get_or_create(
        &self,
        client_id: &ByteString,
        create: impl FnOnce() -> Session,
    ) -> (Arc<SessionCell>, bool) {
        let mut by_client = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = by_client.get(client_id) {
            return (Arc::clone(cell), false);
        }
        let cell = self.new_cell(create());
        by_client.insert(Arc::clone(&cell));
        (cell, true)
    }

    /// The cell of `client_id`, if any.
    pub(crate) fn by_client(&self, client_id: &str) -> Option<Arc<SessionCell>> {
        self.by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
            .cloned()
    }

    /// Every cell, at one moment.
    pub(crate) fn cells(&self) -> Vec<Arc<SessionCell>> {
        self.by_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cells
            .iter()
            .cloned()
            .collect()
    }

    /// Adds a session handed over by another node. A cell this node still
    /// had for the client (stale: the other node owned it since) is
    /// returned as well, for the caller to remove.
    pub(crate) fn replace(&self, session: Session) -> (Arc<SessionCell>, Option<Arc<SessionCell>>) {
        let mut by_client = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cell = self.new_cell(session);
        let stale = by_client.insert(Arc::clone(&cell));
        (cell, stale)
    }

    /// Adds a session loaded from the store.
    pub(crate) fn insert(&self, session: Session) -> Arc<SessionCell> {
        let mut by_client = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cell = self.new_cell(session);
        by_client.insert(Arc::clone(&cell));
        cell
    }

    fn new_cell(&self, session: Session) -> Arc<SessionCell> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(SessionCell::new(key, session));
        self.by_key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(Arc::clone(&cell));
        cell
    }

    /// The cell of a router key.
    pub(crate) fn by_key(&self, key: SessionKey) -> Option<Arc<SessionCell>> {
        let by_key = self.by_key.read().unwrap_or_else(PoisonError::into_inner);
        by_key.get(&key).cloned()
    }

    /// Removes `cell`. Call with its attachment lock held, so that no
    /// connection attaches to it meanwhile.
    pub(crate) fn remove(&self, cell: &Arc<SessionCell>) {
        let mut by_client = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_client.remove(cell);
        self.by_key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(cell);
        cell.removed.store(true, Ordering::Release);
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.by_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cells
            .len()
    }
}

#[cfg(test)]
mod tests {
    use tern_session::{SessionExpiry, SessionLimits};

    use super::*;

    fn session(client_id: &str) -> Session {
        let limits = SessionLimits {
            max_queued_messages: 10,
            max_inflight_messages: 10,
        };
        Session::new(client_id.into(), SessionExpiry::OnDisconnect, limits)
    }

    #[test]
    fn cells_are_found_by_client_and_by_key_until_removed() {
        let registry = Registry::default();
        let (first, created) = registry.get_or_create(&"a".into(), || session("a"));
        assert!(created);
        let (again, created) = registry.get_or_create(&"a".into(), || session("a"));
        assert!(!created && Arc::ptr_eq(&first, &again));
        let other = registry.insert(session("b"));
        assert_eq!(registry.len(), 2);
        assert!(Arc::ptr_eq(&registry.by_client("b").unwrap(), &other));
        assert!(Arc::ptr_eq(&registry.by_key(first.key).unwrap(), &first));

        // A handed-over session replaces the client's cell; removing the
        // stale one leaves the new one in place.
        let (fresh, stale) = registry.replace(session("a"));
        let stale = stale.expect("a had a cell");
        assert!(Arc::ptr_eq(&stale, &first));
        registry.remove(&stale);
        assert!(stale.is_removed());
        assert!(Arc::ptr_eq(&registry.by_client("a").unwrap(), &fresh));
        assert!(registry.by_key(first.key).is_none());
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.cells().len(), 2);

        registry.remove(&fresh);
        assert!(registry.by_client("a").is_none());
        assert!(registry.by_key(fresh.key).is_none());
        assert_eq!(registry.len(), 1);
    }
}
