//! The tokio driver: [`Client::connect`] opens a TCP connection and spawns
//! the one task that owns it and runs a [`ClientSession`](crate::ClientSession)
//! over it. [`Client`] sends commands to that task; [`Events`] receives
//! what it reports and is its join point.
//!
//! Every queue is bounded. Commands wait (the `Client` methods await) when
//! the command channel is full, when the session holds back publishes for
//! the server's receive maximum, or when unwritten bytes pile up. Events
//! wait when the application does not take them, and then the task stops
//! reading the socket, so TCP pushes back on the server. An application
//! must therefore read [`Events`] while it sends commands, not only after.

mod connection;

use std::fmt;
use std::sync::Arc;

use bytestring::ByteString;
use tern_codec::{
    ConnAck, Disconnect, Packet, Publish, SubscribeProperties, SubscriptionOptions, TopicFilter,
    UnsubscribeProperties,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::connection::{Command, Connected, Connection};
use crate::{ClientError, ConnectOptions, Event, RequestId};

/// Which way a traced packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From this client to the server.
    Sent,
    /// From the server to this client.
    Received,
}

/// A function shown every packet sent and received, for debugging output
/// such as `tern pub -d`.
pub type PacketTrace = Arc<dyn Fn(Direction, &Packet) + Send + Sync>;

/// How the driver runs, as opposed to what it asks of the server.
#[derive(Clone)]
pub struct DriverConfig {
    /// Commands queued before [`Client`] methods wait, and publishes the
    /// session may hold back for the server's receive maximum before the
    /// driver stops taking commands. At least 1.
    pub command_capacity: usize,
    /// Events queued before the driver stops reading the socket. At least 1.
    pub event_capacity: usize,
    /// Shown every packet sent and received.
    pub trace: Option<PacketTrace>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            command_capacity: 64,
            event_capacity: 256,
            trace: None,
        }
    }
}

impl fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverConfig")
            .field("command_capacity", &self.command_capacity)
            .field("event_capacity", &self.event_capacity)
            .field("trace", &self.trace.is_some())
            .finish()
    }
}

/// A handle that sends commands to the connection task. Cheap to clone;
/// the connection does not end when handles are dropped (drop or finish
/// [`Events`] for that).
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    connack: Arc<ConnAck>,
    client_id: ByteString,
}

impl Client {
    /// Connects to `addr`, sends CONNECT and waits for the server's CONNACK.
    /// Both the TCP connection and CONNACK must arrive within
    /// `options.connect_timeout`.
    ///
    /// Returns the command handle and the event stream of an accepted
    /// connection; a refusal is [`ClientError::Refused`].
    pub async fn connect(
        addr: impl ToSocketAddrs,
        options: ConnectOptions,
        config: DriverConfig,
    ) -> Result<(Client, Events), ClientError> {
        let stream = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::ConnectTimeout)??;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Self::start(reader, writer, options, config).await
    }

    /// Like [`Client::connect`], over a connection the caller has opened
    /// (a TLS session, for example): sends CONNECT on it and waits for
    /// CONNACK, within `options.connect_timeout`.
    pub async fn connect_over<S>(
        stream: S,
        options: ConnectOptions,
        config: DriverConfig,
    ) -> Result<(Client, Events), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        Self::start(reader, writer, options, config).await
    }

    async fn start<R, W>(
        reader: R,
        writer: W,
        options: ConnectOptions,
        config: DriverConfig,
    ) -> Result<(Client, Events), ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (command_tx, command_rx) = mpsc::channel(config.command_capacity.max(1));
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity.max(1));
        let (connected_tx, connected_rx) = oneshot::channel();
        let connection = Connection::new(
            reader,
            writer,
            options,
            &config,
            command_rx,
            event_tx,
            connected_tx,
        );
        let task = tokio::spawn(connection.run());
        let events = Events {
            events: event_rx,
            task: Some(task),
        };
        match connected_rx.await {
            Ok(Connected { connack, client_id }) => {
                let client = Client {
                    commands: command_tx,
                    connack: Arc::from(connack),
                    client_id,
                };
                Ok((client, events))
            }
            // The task ended before CONNACK: it says why.
            Err(_) => Err(events
                .finish()
                .await
                .err()
                .unwrap_or(ClientError::TaskEnded)),
        }
    }

    /// The server's CONNACK: session present, and its limits (MQTT 5).
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// The client identifier in force, as configured or as assigned by the server.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Publishes a message; see [`ClientSession::publish`](crate::ClientSession::publish).
    /// Returns once the session has accepted it; QoS 1 and 2 messages end
    /// with [`Event::PublishCompleted`] under the returned identifier.
    pub async fn publish(&self, publish: Publish) -> Result<RequestId, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish(publish, reply)).await?;
        Ok(answer.await.map_err(|_| ClientError::TaskEnded)??)
    }

    /// Subscribes; ends with [`Event::Subscribed`].
    pub async fn subscribe(
        &self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> Result<RequestId, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Subscribe(filters, properties, reply))
            .await?;
        Ok(answer.await.map_err(|_| ClientError::TaskEnded)??)
    }

    /// Unsubscribes; ends with [`Event::Unsubscribed`].
    pub async fn unsubscribe(
        &self,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
    ) -> Result<RequestId, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Unsubscribe(filters, properties, reply))
            .await?;
        Ok(answer.await.map_err(|_| ClientError::TaskEnded)??)
    }

    /// Sends DISCONNECT; the task then writes what is queued and closes the
    /// connection, and [`Events::finish`] returns `Ok`.
    pub async fn disconnect(&self, disconnect: Disconnect) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Disconnect(disconnect, reply)).await?;
        Ok(answer.await.map_err(|_| ClientError::TaskEnded)??)
    }

    /// Sends DISCONNECT with reason "normal disconnection": the server
    /// discards the will.
    pub async fn disconnect_normally(&self) -> Result<(), ClientError> {
        self.disconnect(Disconnect::default()).await
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::TaskEnded)
    }
}

/// The events of one connection, and the join point of its task.
///
/// [`Event::Connected`] is not delivered here: [`Client::connect`] returns
/// once it has happened. [`Events::recv`] returns `None` once the
/// connection has ended; [`Events::finish`] then says how it ended.
/// Dropping `Events` (or calling `finish` early) ends the connection with a
/// normal DISCONNECT.
#[derive(Debug)]
pub struct Events {
    events: mpsc::Receiver<Event>,
    task: Option<JoinHandle<Result<(), ClientError>>>,
}

impl Events {
    /// The next event; `None` when the connection has ended. Cancel safe.
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Ends the connection if it is still open (discarding events not yet
    /// received), waits for the task and returns how the connection ended:
    /// `Ok` after a DISCONNECT from this side, otherwise the reason.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        self.events.close();
        while self.events.recv().await.is_some() {}
        self.join().await
    }

    async fn join(&mut self) -> Result<(), ClientError> {
        let Some(task) = self.task.take() else {
            return Err(ClientError::TaskEnded);
        };
        match task.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(ClientError::TaskEnded),
        }
    }
}
