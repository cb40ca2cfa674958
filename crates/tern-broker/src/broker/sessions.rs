//! The life of a session around its connections: attaching a connection
//! (creating, resuming or discarding the session, taking it over from
//! another connection), detaching, and the housekeeping that publishes
//! delayed wills and removes expired sessions.

use std::sync::Arc;
use std::time::Duration;

use tern_session::{Message, Op, Pending, Session, SessionStore, Timestamp};
use tokio::sync::watch;

use super::registry::{Attachment, SessionCell, SessionLease};
use super::{Broker, stopped, wall_clock};
use crate::protocol::OpenSession;

/// How long a CONNECT waits for the connection it takes over to finish:
/// longer than that connection may spend in a blocked write, so that it
/// normally finishes first.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);

/// How often housekeeping looks at the clock when nothing is scheduled,
/// and asks the store to remove what expired.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// A session attached to a connection.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The connection's lease on the session.
    pub lease: SessionLease,
    /// The session was resumed.
    pub session_present: bool,
    /// The will of a discarded session, owed now that it ends.
    pub orphan_will: Option<Message>,
}

/// When housekeeping must look at a disconnected session: its will or its
/// end, whichever comes first. `None` while connected or if neither comes.
pub(crate) fn next_deadline(session: &Session) -> Option<Timestamp> {
    if session.is_connected() {
        return None;
    }
    [session.will_due_at(), session.expires_at()]
        .into_iter()
        .flatten()
        .min()
}

impl Broker {
    /// Submits a session's changes, if any, to the store. Call it with the
    /// session locked, so that writes reach the store in order.
    pub(crate) fn submit(&self, ops: Vec<Op>) -> Option<Pending<()>> {
        if let Some(link) = self.cluster() {
            self.replicate_session_records(link, &ops);
        }
        (!ops.is_empty()).then(|| self.store.write(ops))
    }

    /// Attaches a connection to the session `request` names: taking it
    /// over from another connection, discarding it (clean start, or it has
    /// expired) or resuming it.
    pub(crate) async fn open_session(&self, request: &OpenSession, connection_id: u64) -> Opened {
        if let Some(link) = self.cluster() {
            self.claim_client(link, &request.client_id).await;
        }
        loop {
            let (cell, created) = self.registry.get_or_create(&request.client_id, || {
                Session::new(request.client_id.clone(), request.expiry, self.limits)
            });
            let mut attached = cell.attachment.lock().await;
            if cell.is_removed() {
                // Expired while we waited for it: start again with a new one.
                continue;
            }
            if let Some(previous) = attached.take() {
                self.end_attachment(&cell, previous).await;
            }
            let now = wall_clock();
            let (session_present, orphan_will) = {
                let mut session = cell.lock();
                let resumable = !created && !request.clean_start && !session.is_expired(now);
                let orphan_will = if created || resumable {
                    None
                } else {
                    self.replace_session(&cell, &mut session, request, now)
                };
                if let Some(pending) = self.submit(session.take_changes()) {
                    self.track_write(pending);
                }
                (resumable, orphan_will)
            };
            cell.set_attached(connection_id);
            *attached = Attachment::connection(connection_id);
            self.metrics.client_connected(true);
            return Opened {
                lease: SessionLease::new(Arc::clone(&cell), connection_id),
                session_present,
                orphan_will,
            };
        }
    }

    /// Asks the attached connection to end and waits until it is done with
    /// the session (or [`TAKEOVER_TIMEOUT`] passed).
    pub(crate) async fn end_attachment(&self, cell: &SessionCell, previous: Attachment) {
        let client_id = &*cell.client_id;
        self.metrics.client_connected(false);
        tracing::info!(
            client_id,
            previous = previous.connection_id(),
            "session taken over"
        );
        if !previous.is_leased() {
            return;
        }
        let wakes = &self.parked_wakes;
        if !cell
            .take_over_from(previous.connection_id(), wakes, TAKEOVER_TIMEOUT)
            .await
        {
            tracing::warn!(
                client_id,
                "the connection taken over did not finish within 15 s; attaching anyway"
            );
        }
    }

    /// Ends `session` and puts a new one in its place; returns the old
    /// session's will, which is due when the session ends, as published
    /// `now`.
    fn replace_session(
        &self,
        cell: &SessionCell,
        session: &mut Session,
        request: &OpenSession,
        now: Timestamp,
    ) -> Option<Message> {
        let mut ops = session.take_changes();
        let will = if session.is_connected() {
            None
        } else {
            session.take_will().map(|will| will.into_message(now))
        };
        ops.extend(session.take_changes());
        if session.expiry().is_persistent() {
            ops.push(Op::RemoveSession(cell.client_id.clone()));
        }
        self.remove_local(cell.key);
        *session = Session::new(request.client_id.clone(), request.expiry, self.limits);
        ops.extend(session.take_changes());
        if let Some(pending) = self.submit(ops) {
            self.track_write(pending);
        }
        will
    }

    /// The connection `connection_id` is done with the session: detach it,
    /// unless another connection took over. A session that ended with its
    /// connection is removed; otherwise housekeeping is told when to look
    /// at it again.
    pub(crate) async fn detach(&self, cell: &Arc<SessionCell>, connection_id: u64) {
        let mut attached = cell.attachment.lock().await;
        let mine = attached
            .as_ref()
            .is_some_and(|attachment| attachment.connection_id() == connection_id);
        if !mine {
            return;
        }
        *attached = None;
        cell.set_attached(0);
        self.metrics.client_connected(false);
        let now = wall_clock();
        let expired = {
            let mut session = cell.lock();
            // Kept while disconnected: what it does not hold is freed.
            session.release_idle_memory();
            let expired = session.is_expired(now);
            if let (false, Some(at)) = (expired, next_deadline(&session)) {
                self.schedule(cell.key, at);
            }
            expired
        };
        if expired {
            self.remove_session(cell);
        }
    }

    /// Removes an ended session from the registry, the router and the
    /// store. Call with its attachment lock held.
    fn remove_session(&self, cell: &Arc<SessionCell>) {
        self.registry.remove(cell);
        self.remove_local(cell.key);
        self.release_client(&cell.client_id);
        let mut session = cell.lock();
        let mut ops = session.take_changes();
        if session.expiry().is_persistent() {
            ops.push(Op::RemoveSession(cell.client_id.clone()));
        }
        if let Some(pending) = self.submit(ops) {
            self.track_write(pending);
        }
    }

    /// Publishes the wills due at `now` and removes the sessions that
    /// ended.
    pub(crate) fn run_due(&self, now: Timestamp) {
        for key in self.take_due(now) {
            let Some(cell) = self.registry.by_key(key) else {
                continue;
            };
            let Ok(attached) = cell.attachment.try_lock() else {
                // A connection is attaching or detaching: look again soon.
                self.schedule(key, now.saturating_add(HOUSEKEEPING_INTERVAL));
                continue;
            };
            if attached.is_some() || cell.is_removed() {
                continue;
            }
            let (will, expired) = {
                let mut session = cell.lock();
                let will = session.take_due_will(now);
                let expired = session.is_expired(now);
                if let (false, Some(at)) = (expired, next_deadline(&session)) {
                    self.schedule(key, at);
                }
                if let Some(pending) = self.submit(session.take_changes()) {
                    self.track_write(pending);
                }
                (will, expired)
            };
            if expired {
                tracing::info!(client_id = %cell.client_id, "session expired");
                self.remove_session(&cell);
            }
            drop(attached);
            if let Some(will) = will {
                tracing::debug!(client_id = %cell.client_id, "publishing a delayed will");
                for pending in self.route(will, Some(key), now).pendings {
                    self.track_write(pending);
                }
            }
        }
    }

    /// Removes from the store what expired there (sessions, queued and
    /// retained messages).
    async fn expire_store(&self, now: Timestamp) {
        match self.store.expire(now).await {
            Ok(expired) if !expired.sessions.is_empty() => {
                tracing::debug!(sessions = expired.sessions.len(), "store expiry");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "session store expiry failed"),
        }
    }
}

/// The housekeeping task: wills and session expiry, until shutdown.
pub(crate) async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks: u32 = 0;
    loop {
        let now = wall_clock();
        let wait = broker
            .next_scheduled()
            .map_or(HOUSEKEEPING_INTERVAL, |at| {
                at.saturating_duration_since(now)
            })
            .min(HOUSEKEEPING_INTERVAL);
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            () = tokio::time::sleep(wait) => {}
            () = broker.housekeeping_wake.notified() => {}
        }
        let now = wall_clock();
        broker.run_due(now);
        broker.reap_writes();
        // Back-pressure: writes never block; wait here, holding no lock.
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            _ready = broker.store.ready() => {}
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(5) {
            broker.expire_store(now).await;
        }
    }
}
