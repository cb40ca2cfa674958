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
//! - an attached connection holds a [`SessionLease`]; it lets go of the
//!   session when the lease is dropped, which a takeover waits for;
//! - lock order: registry maps, then attachment, then session; the
//!   takeover's waiter lock is taken alone;
//! - an idle connection may park (no task: `server::parking`); then
//!   whoever queues work for it (a message to deliver, a takeover) wakes
//!   it through [`ParkedWakes`], reading the cell's parking token under
//!   the session lock, under which the connection set it and checked
//!   that nothing waited: a wake-up and a park cannot miss each other.

use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use hashbrown::{HashTable, hash_table};
use tern_codec::ByteString;
use tern_session::Session;
use tokio::sync::{Notify, oneshot};

/// The router's name for a session: small, copyable, never reused while
/// the broker runs.
pub(crate) type SessionKey = u64;

/// The connection attached to a session, as another connection taking
/// the session over sees it: its id (8 bytes, `None` being 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attachment(NonZeroU64);

impl Attachment {
    /// A session being handed over to another node of a cluster: attached
    /// to no connection, yet not disconnected (no will, no expiry) until
    /// the handover ends.
    pub(crate) const HANDING_OVER: Self = Self(NonZeroU64::MAX);

    /// The connection `connection_id`; `None` for 0, which no connection
    /// has (`Broker::next_connection_id` starts at 1).
    pub(crate) fn connection(connection_id: u64) -> Option<Self> {
        NonZeroU64::new(connection_id)
            .map(Self)
            .filter(|attachment| *attachment != Self::HANDING_OVER)
    }

    /// The attached connection (`u64::MAX` while handed over).
    pub(crate) fn connection_id(self) -> u64 {
        self.0.get()
    }

    /// Whether a connection holds a [`SessionLease`] to wait for: all but
    /// [`Attachment::HANDING_OVER`].
    pub(crate) fn is_leased(self) -> bool {
        self != Self::HANDING_OVER
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
    /// Wakes the attached connection: messages were queued, or it was
    /// asked to end ([`SessionCell::kick`]).
    pub notify: Notify,
    /// The connection attached, if any.
    pub attachment: tokio::sync::Mutex<Option<Attachment>>,
    /// The connection attached and still holding its [`SessionLease`]
    /// (0: none): set with `attachment`, cleared when the lease is
    /// dropped; readable without a lock.
    attached_to: AtomicU64,
    /// The connection asked to end: a takeover.
    kicked: AtomicU64,
    /// A takeover waiting for the connection it kicked to drop its lease:
    /// a channel made only when one waits, rather than two kept by every
    /// connection for the rare takeover (64 bytes each: see
    /// docs/performance.md, "Idle connections").
    waiter: Mutex<Option<oneshot::Sender<()>>>,
    /// Set (under the attachment lock) once the cell left the registry.
    removed: AtomicBool,
    /// The parking token of the attached connection while it is parked,
    /// else [`NOT_PARKED`]; written and read under the session lock (see
    /// the module docs). 32 bits, beside `removed` in one word: a lot
    /// whose tokens outgrow them does not park more.
    parked: AtomicU32,
}

/// The parking token of a cell whose connection is not parked.
const NOT_PARKED: u32 = u32::MAX;

impl SessionCell {
    fn new(key: SessionKey, session: Session) -> Self {
        Self {
            key,
            client_id: session.client_id().clone(),
            session: Mutex::new(session),
            notify: Notify::new(),
            attachment: tokio::sync::Mutex::new(None),
            attached_to: AtomicU64::new(0),
            kicked: AtomicU64::new(0),
            waiter: Mutex::new(None),
            removed: AtomicBool::new(false),
            parked: AtomicU32::new(NOT_PARKED),
        }
    }

    /// Records that the attached connection is parked under `token`
    /// (`None`: it runs again). Takes the session's guard: see the module
    /// docs.
    pub(crate) fn set_parked(&self, _session: &MutexGuard<'_, Session>, token: Option<u32>) {
        self.parked
            .store(token.unwrap_or(NOT_PARKED), Ordering::Relaxed);
    }

    /// The token of the attached connection if it is parked. Takes the
    /// session's guard: see the module docs.
    pub(crate) fn parked(&self, _session: &MutexGuard<'_, Session>) -> Option<usize> {
        let token = self.parked.load(Ordering::Relaxed);
        (token != NOT_PARKED).then_some(token as usize)
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

    /// Asks the connection `connection_id` to end (a takeover), waking
    /// it, parked or not. It sees the request ([`SessionLease::is_kicked`])
    /// when next woken through [`SessionCell::notify`]: a notification
    /// that finds it busy is kept for its next wait.
    pub(crate) fn kick(&self, connection_id: u64, wakes: &ParkedWakes) {
        self.kicked.store(connection_id, Ordering::Release);
        self.notify.notify_one();
        wakes.wake_connection(self);
    }

    /// Takes the session over from the connection `connection_id`: asks
    /// it to end ([`SessionCell::kick`]) and waits until it has dropped
    /// its lease, for `timeout` at most; false if it timed out. Call with
    /// the attachment lock held (one takeover at a time).
    pub(crate) async fn take_over_from(
        &self,
        connection_id: u64,
        wakes: &ParkedWakes,
        timeout: Duration,
    ) -> bool {
        self.kick(connection_id, wakes);
        let dropped = {
            let mut waiter = self.waiter.lock().unwrap_or_else(PoisonError::into_inner);
            if !self.is_attached_to(connection_id) {
                return true;
            }
            let (sender, dropped) = oneshot::channel();
            *waiter = Some(sender);
            dropped
        };
        // A closed channel means the same: only the lease sends.
        tokio::time::timeout(timeout, dropped).await.is_ok()
    }

    /// The connection `connection_id` lets go of the session: it no
    /// longer touches it, and a takeover waiting for it (the one that
    /// kicked it last) proceeds.
    fn release(&self, connection_id: u64) {
        let waiter = {
            let mut waiter = self.waiter.lock().unwrap_or_else(PoisonError::into_inner);
            let _other = self.attached_to.compare_exchange(
                connection_id,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            let kicked = self.kicked.load(Ordering::Acquire) == connection_id;
            waiter.take_if(|_| kicked)
        };
        if let Some(sender) = waiter {
            let _gone = sender.send(());
        }
    }
}

/// A connection's hold on the session it is attached to: the cell, and
/// which connection holds it. Dropping it (the connection ended, or its
/// task panicked) lets go of the session: a connection taking it over
/// waits for that ([`SessionCell::lease_dropped`]).
#[derive(Debug)]
pub(crate) struct SessionLease {
    cell: Arc<SessionCell>,
    connection_id: u64,
}

impl SessionLease {
    /// The lease of the connection `connection_id`, attached to `cell`.
    pub(crate) fn new(cell: Arc<SessionCell>, connection_id: u64) -> Self {
        Self {
            cell,
            connection_id,
        }
    }

    /// The session's cell.
    pub(crate) fn cell(&self) -> &Arc<SessionCell> {
        &self.cell
    }

    /// The connection holding the lease.
    pub(crate) fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// Whether the connection was asked to end ([`SessionCell::kick`]).
    pub(crate) fn is_kicked(&self) -> bool {
        self.cell.kicked.load(Ordering::Acquire) == self.connection_id
    }

    /// Records that the connection parks under the parking lot's `token`,
    /// unless work for it is there already (a message it may be sent, a
    /// takeover) or it is no longer attached; false then. Under the
    /// session lock, which whoever queues work holds too (see the module
    /// docs).
    pub(crate) fn try_park(&self, token: usize) -> bool {
        let Ok(token) = u32::try_from(token) else {
            return false;
        };
        let mut session = self.cell.lock();
        let free = self.is_attached() && !session.can_deliver() && !self.is_kicked();
        if free {
            session.release_idle_memory();
            self.cell.set_parked(&session, Some(token));
        }
        free
    }

    /// Whether the connection may touch the session: it is the one
    /// attached (a takeover that timed out waiting for it attaches
    /// another).
    pub(crate) fn is_attached(&self) -> bool {
        self.cell.is_attached_to(self.connection_id)
    }
}

impl std::ops::Deref for SessionLease {
    type Target = SessionCell;

    fn deref(&self) -> &SessionCell {
        &self.cell
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        self.cell.release(self.connection_id);
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
    /// takeover's kick, [`SessionCell::kick`]). Deliveries are woken by
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
/// not, has an entry in both indexes). Client identifiers come from
/// clients, so they are hashed with SipHash and a random key, as in
/// `HashMap`; router keys are numbers this broker assigns, looked up once
/// per recipient of every message, so they take the much cheaper foldhash
/// (hashbrown's default, also randomly seeded).
struct Index<K: ?Sized + 'static, H = RandomState> {
    cells: HashTable<Arc<SessionCell>>,
    hasher: H,
    key_of: fn(&SessionCell) -> &K,
}

impl<K: Hash + Eq + ?Sized, H: BuildHasher + Default> Index<K, H> {
    fn new(key_of: fn(&SessionCell) -> &K) -> Self {
        Self {
            cells: HashTable::new(),
            hasher: H::default(),
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

impl<K: ?Sized, H> std::fmt::Debug for Index<K, H> {
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
    by_key: RwLock<Index<SessionKey, hashbrown::DefaultHashBuilder>>,
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

    /// Every client has a cell, connected or not, for as long as its
    /// session lives: 472 bytes with the `Arc`'s counts (jemalloc's
    /// 512-byte class) until the takeover channels were made on demand
    /// and the session's delivery state and journal boxed until used. A
    /// cell of at most 304 bytes, 320 with the counts, is in the 320-byte
    /// class; the next is 384. See docs/performance.md, "Idle
    /// connections".
    #[test]
    fn a_cell_stays_in_its_size_class() {
        const CELL_LIMIT: usize = 304;
        let cell = size_of::<SessionCell>();
        println!("a session cell takes {cell} bytes");
        assert!(
            cell <= CELL_LIMIT,
            "a session cell takes {cell} bytes, more than {CELL_LIMIT}"
        );
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

#[cfg(test)]
mod lease_tests {
    use std::time::Duration;

    use tern_session::{SessionExpiry, SessionLimits};

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    fn cell() -> Arc<SessionCell> {
        let limits = SessionLimits {
            max_queued_messages: 10,
            max_inflight_messages: 10,
        };
        let session = Session::new("c".into(), SessionExpiry::OnDisconnect, limits);
        Registry::default().insert(session)
    }

    /// A cell with connection `connection_id` attached, and its lease.
    fn attached(connection_id: u64) -> (Arc<SessionCell>, SessionLease) {
        let cell = cell();
        cell.set_attached(connection_id);
        let lease = SessionLease::new(Arc::clone(&cell), connection_id);
        (cell, lease)
    }

    #[tokio::test]
    async fn a_takeover_waits_for_the_lease_to_be_dropped() {
        let (cell, lease) = attached(7);
        let waiting = tokio::spawn({
            let cell = Arc::clone(&cell);
            async move { cell.take_over_from(7, &ParkedWakes::default(), LONG).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "proceeded while the lease was held");
        assert!(lease.is_kicked() && lease.is_attached());
        drop(lease);
        assert!(waiting.await.unwrap(), "the wait timed out");
        assert!(
            !cell.is_attached_to(7),
            "a dropped lease no longer touches the session"
        );
        // Already dropped: no wait.
        assert!(
            cell.take_over_from(7, &ParkedWakes::default(), Duration::ZERO)
                .await
        );
    }

    #[tokio::test]
    async fn a_takeover_gives_up_after_its_timeout() {
        let (cell, lease) = attached(7);
        let wakes = ParkedWakes::default();
        assert!(
            !cell
                .take_over_from(7, &wakes, Duration::from_millis(20))
                .await
        );
        assert!(lease.is_attached());
    }

    #[tokio::test]
    async fn a_late_lease_does_not_release_a_wait_for_another_connection() {
        // Connection 7 was taken over after a timeout: 8 is attached, and
        // a second takeover waits for 8. 7 ending late must not let it on.
        let (cell, late) = attached(7);
        let wakes = ParkedWakes::default();
        assert!(
            !cell
                .take_over_from(7, &wakes, Duration::from_millis(20))
                .await
        );
        cell.set_attached(8);
        let current = SessionLease::new(Arc::clone(&cell), 8);
        let waiting = tokio::spawn({
            let cell = Arc::clone(&cell);
            async move { cell.take_over_from(8, &ParkedWakes::default(), LONG).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(late);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "released by another connection's lease"
        );
        assert!(current.is_attached());
        drop(current);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_kick_reaches_the_connection_it_names_even_if_it_was_busy() {
        let (cell, lease) = attached(7);
        let other = SessionLease::new(Arc::clone(&cell), 6);
        cell.kick(7, &ParkedWakes::default());
        assert!(lease.is_kicked());
        assert!(!other.is_kicked());
        // Nobody waited when it came: the notification is kept.
        tokio::time::timeout(Duration::from_secs(1), lease.notify.notified())
            .await
            .expect("the kick's notification was lost");
    }

    #[test]
    fn a_parked_connection_is_recorded_unless_work_is_there() {
        let wakes = ParkedWakes::default();
        let (cell, lease) = attached(7);
        assert!(lease.try_park(3));
        assert_eq!(cell.parked(&cell.lock()), Some(3));
        cell.set_parked(&cell.lock(), None);

        // A kick that came first: the connection must run to see it,
        // and a kick that comes after wakes the parked token.
        cell.kick(7, &wakes);
        assert!(!lease.try_park(4));
        assert_eq!(cell.parked(&cell.lock()), None);
        let (cell, lease) = attached(9);
        assert!(lease.try_park(5));
        cell.kick(9, &wakes);
        assert_eq!(wakes.take(), vec![5]);
    }
}
