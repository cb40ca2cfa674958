//! Tern's single-node MQTT broker (MQTT 3.1, 3.1.1 and 5.0) as a library.
//! The `tern serve` command builds a [`BrokerConfig`], calls
//! [`Server::start`], on SIGHUP [`Server::reload_tls`] (new certificates
//! for TLS listeners) and, on SIGTERM, [`Server::shutdown`]:
//!
//! ```no_run
//! use tern_broker::{BrokerConfig, Server};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let config = BrokerConfig {
//!     listeners: vec!["0.0.0.0:1883".parse()?],
//!     ..BrokerConfig::default() // data in ./tern-data, sled, flush before PUBACK
//! };
//! config.validate()?; // start() validates too; this names the key at fault
//! let server = Server::start(config).await?;
//! println!("listening on {:?}", server.local_addrs());
//! tokio::signal::ctrl_c().await?;
//! server.shutdown().await?; // DISCONNECT 0x8B, flush, join every task
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`protocol`]: the per-connection protocol as a **sans-IO state
//!   machine**. [`protocol::Protocol::handle`] takes an input (a decoded
//!   packet, a decode error, a tick, the result of an operation it asked
//!   for) and returns actions (send packets, open or take over a session,
//!   route a message, change a subscription, close with a reason code). It
//!   works on the client's `tern_session::Session`, lent by the caller,
//!   which holds in-flight messages, packet identifiers, the queue and
//!   incoming QoS 2 identifiers. It never reads a clock (time is an
//!   argument: `Instant` for keep alive, `Timestamp` for expiry), never
//!   touches a socket and takes no lock. Its unit tests drive it with
//!   packets and assert on actions; most protocol rules are tested there.
//!   Authentication (password, or SCRAM-SHA-256 over AUTH packets), the
//!   ACL checks of publish, subscribe, delivery and wills, and the topic
//!   and subscription limits are asked of a `tern_auth::Authorizer` there
//!   (`protocol/auth.rs`); [`Server::reload_auth`] swaps the authorizer
//!   when the password or ACL file changes (SIGHUP in `tern serve`).
//! - `broker`: the state every connection shares ([`Server`] owns it):
//!   the router, the session registry, the retained index, the deadlines
//!   of disconnected sessions, the store and the counters; and what acts
//!   on them: routing, attaching and detaching sessions, housekeeping
//!   (delayed wills, session expiry) and `$SYS`.
//! - `server`: the tokio runtime: [`Server`], one accept loop per
//!   listener, one task per connection, acknowledgements waiting for
//!   durability. Its `transport` module runs what comes before MQTT on a
//!   listener (PROXY protocol, TLS, WebSocket) and hands the connection
//!   task, generic over the stream, a byte stream and who the client is.
//! - [`config`]: [`BrokerConfig`] and its validation.
//! - `store`: the session store, chosen once at start-up (sled in the data
//!   directory, or in memory).
//!
//! # The flow of a PUBLISH
//!
//! 1. The publisher's connection task reads into its `BytesMut`;
//!    `tern_codec::Decoder` splits off a whole packet (an oversized one is
//!    refused from its fixed header, before its body is buffered).
//! 2. With the publisher's session locked, the protocol checks the packet
//!    (topic alias, QoS and retain limits, Receive Maximum, `$SYS`), records
//!    a QoS 2 identifier, and returns `Route { message, ack }`. The
//!    session's changes are submitted to the store before the lock is
//!    released.
//! 3. Routing stores or clears a retained message (index and store, under
//!    the index lock), matches the topic in the router (read lock), and for
//!    each recipient locks its session just long enough to enqueue the
//!    recipient's copy (QoS lowered to the subscription's, RETAIN kept only
//!    with retain-as-published, its subscription identifiers), submits the
//!    resulting store operations, and wakes its connection (`Notify`). A
//!    full queue drops by its policy; nobody waits for a slow subscriber.
//! 4. The acknowledgement waits in the publisher's `AckQueue` until every
//!    store write it depends on is durable (with `durability = flush`, on
//!    disk in every matching persistent session); then the protocol sends
//!    PUBACK or PUBREC, in arrival order.
//! 5. Each woken subscriber's task takes messages from its session queue
//!    as the in-flight window (its Receive Maximum) allows, and writes all
//!    the packets of one turn with one `write_all`.
//!
//! # Who owns what
//!
//! | state | owner | how others reach it |
//! | --- | --- | --- |
//! | subscriptions | the router (`tern_router::Router`, keyed by a `u64` session key) | its `RwLock`: written by the session's own connection task, read by every publisher |
//! | each session | its `SessionCell` in the registry | a `std::sync::Mutex`, held for one protocol step or one enqueue, never across `.await` |
//! | who is attached to a session | `SessionCell::attachment` | a `tokio::sync::Mutex`: CONNECT (takeover), detach and housekeeping serialise on it |
//! | retained messages | `tern_router::RetainedIndex` | an `RwLock`; its store writes are submitted under the write lock |
//! | wills and expiry of disconnected sessions | a deadline set | drained by the housekeeping task |
//! | socket, buffers, protocol state of a connection | its connection task | nobody else |
//! | durable copies | the store (`SledStore` or `MemoryStore`) | its own synchronisation; each session's writes are submitted under its lock, so in order |
//!
//! Lock order: registry maps, then a session's attachment, then its
//! session, then the deadline set. No lock is held across socket I/O.
//!
//! # Tasks
//!
//! Every task has an owner, a cancel signal (one `watch` channel) and a
//! join point: [`Server`] joins the accept loops, housekeeping and `$SYS`;
//! each accept loop owns its connections in a `JoinSet` and joins them
//! after it stops accepting. Only cancel-safe futures appear in `select!`.
//!
//! # Invariants, written as absences
//!
//! - The protocol state machine does no I/O, reads no clock, takes no lock
//!   and never panics on client input: every malformed or forbidden packet
//!   becomes a close with a reason code (a DISCONNECT for MQTT 5 clients,
//!   a plain close before MQTT 5), affecting that client only.
//! - Nothing here names sled: storage goes through
//!   `tern_session::SessionStore`, chosen once at start-up (an enum, not a
//!   trait object swapped at runtime).
//! - A publisher never waits for a subscriber: queues are bounded and drop
//!   by a stated policy; a client that does not read is dropped after 10 s.
//! - `$SYS` topics are never written to the store and never accepted from
//!   clients.
//! - No runtime thread blocks on the store: a write is submitted without
//!   waiting; the store's back-pressure (`SessionStore::ready`) is awaited
//!   by each connection between turns, and by housekeeping, with no lock
//!   held.
//! - A flood of connections closes only the offending connections: beyond
//!   `max_connections` or `max_connection_rate` a new socket is closed
//!   before anything is read; a
//!   socket that never sends CONNECT is closed after `connect_timeout`; an
//!   accept that fails for lack of file descriptors pauses the accept loop
//!   briefly (logged at most once a second) instead of spinning or
//!   stopping it.
//!
//! # Persistence
//!
//! Sessions with an expiry interval above 0 (MQTT 3.1.1: clean session 0)
//! write every change through the store. At start-up the broker loads
//! every stored session (subscriptions go back into the router; queued and
//! in-flight messages are kept) and the retained messages, so a restart
//! between publish and receive loses nothing a persistent session was
//! promised. A graceful shutdown records every session as disconnected
//! and discards the wills of connected clients (a shutdown is not a client
//! failure). Expired sessions are removed by housekeeping, and the store's
//! own expiry runs every few seconds.

mod broker;
pub mod config;
mod error;
mod metrics;
pub mod protocol;
mod server;
mod store;

pub use config::{
    AclDefault, BrokerConfig, ClusterSettings, ConfigError, DurabilityConfig, ListenerConfig,
    ListenerKind, MAX_IDLE_POLL_US,
};
pub use error::BrokerError;
pub use metrics::MetricsSnapshot;
pub use server::{ListenerInfo, Server, TlsError, TlsReload};
