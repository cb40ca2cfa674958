//! Tern's MQTT client: the one client implementation used by `tern pub`,
//! `tern sub`, the benchmark tool (`tern bench`) and the end-to-end tests.
//!
//! It has two layers, in the manner of sans-IO protocol libraries:
//!
//! - [`ClientSession`] is the client side of the protocol as a state
//!   machine. It takes inputs (packets received, commands from the
//!   application, ticks carrying the current time) and queues outputs
//!   ([`Output::Send`] a packet, [`Output::Event`] for the application). It
//!   never touches a socket and never reads the clock, so its unit tests
//!   drive it packet by packet and assert on what it emits. It allocates
//!   packet identifiers, runs the QoS 1 and QoS 2 handshakes in both
//!   directions, respects the server's receive maximum, schedules PINGREQ
//!   and detects ping timeouts, and resolves topic aliases sent by the server.
//! - [`Client`] is a small tokio driver around it: one task owns one TCP
//!   connection, decodes with [`tern_codec::Decoder`], writes packets in
//!   batches and carries out what the session asks for. [`Client`] is the
//!   cloneable handle that sends commands; [`Events`] receives what the
//!   session reports and is the join point of the connection task.
//!
//! There is no broker code here, and the wire format lives in `tern-codec`.
//!
//! ```no_run
//! # async fn example() -> Result<(), tern_client::ClientError> {
//! use tern_client::{Client, ConnectOptions, DriverConfig, Event};
//! use tern_codec::{ProtocolVersion, Publish, QoS};
//!
//! let options = ConnectOptions::new(ProtocolVersion::V5, "sensor-1");
//! let (client, mut events) =
//!     Client::connect("127.0.0.1:1883", options, DriverConfig::default()).await?;
//! let mut message = Publish::new("sensors/1/temperature", "21.5");
//! message.qos = QoS::AtLeastOnce;
//! let sent = client.publish(message).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::PublishCompleted { request, .. } = event {
//!         if request == sent {
//!             break;
//!         }
//!     }
//! }
//! client.disconnect_normally().await?;
//! events.finish().await
//! # }
//! ```

mod driver;
mod error;
mod event;
mod options;
mod session;

pub use driver::{Client, Direction, DriverConfig, Events, PacketTrace};
pub use error::{ClientError, CommandError, ProtocolError};
pub use event::{Event, Output, RequestId};
pub use options::{ConnectOptions, DEFAULT_TOPIC_ALIAS_MAXIMUM};
pub use session::{ClientSession, SessionState};
