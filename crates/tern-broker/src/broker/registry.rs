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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

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
    /// takeover's kick). Deliveries are woken by `Broker::enqueue`.
    pub(crate) fn wake_connection(&self, cell: &SessionCell) {
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

/// Sessions by client identifier and by key; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_client: Mutex<HashMap<ByteString, Arc<SessionCell>>>,
    by_key: RwLock<HashMap<SessionKey, Arc<SessionCell>>>,
    next_key: AtomicU64,
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
        by_client.insert(client_id.clone(), Arc::clone(&cell));
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
            .values()
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
        let stale = by_client.insert(cell.client_id.clone(), Arc::clone(&cell));
        (cell, stale)
    }

    /// Adds a session loaded from the store.
    pub(crate) fn insert(&self, session: Session) -> Arc<SessionCell> {
        let mut by_client = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cell = self.new_cell(session);
        by_client.insert(cell.client_id.clone(), Arc::clone(&cell));
        cell
    }

    fn new_cell(&self, session: Session) -> Arc<SessionCell> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(SessionCell::new(key, session));
        self.by_key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&cell));
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
        if by_client
            .get(&cell.client_id)
            .is_some_and(|current| Arc::ptr_eq(current, cell))
        {
            by_client.remove(&cell.client_id);
        }
        self.by_key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&cell.key);
        cell.removed.store(true, Ordering::Release);
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.by_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
