//! The connection task: moves bytes between one socket and one
//! [`ClientSession`], and carries out what the session asks for.
//!
//! One `select!` loop waits, with only cancel-safe futures, for whichever
//! comes first: room in the event channel for a pending event, bytes from
//! the server, room in the socket for unwritten bytes, a command, the
//! session's next deadline, or the application dropping its [`Events`].
//! Packets the session emits are encoded into one write buffer, so that
//! everything produced by one wake-up leaves in one write.
//!
//! [`Events`]: super::Events

use std::collections::VecDeque;
use std::time::Instant;

use bytes::BytesMut;
use bytestring::ByteString;
use tern_codec::{
    ConnAck, Decoder, Disconnect, Publish, SubscribeProperties, SubscriptionOptions, TopicFilter,
    UnsubscribeProperties,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, sleep_until, timeout};

use super::{Direction, DriverConfig, PacketTrace};
use crate::{ClientError, ClientSession, CommandError, ConnectOptions, Event, Output, RequestId};

/// Stop taking commands while this many bytes wait to be written.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Read at least this much at a time.
const READ_CHUNK: usize = 8 * 1024;
/// How long the last bytes (a DISCONNECT) may take to leave when closing.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// A command from a [`Client`](super::Client), with where to answer.
pub(super) enum Command {
    Publish(Publish, Reply<RequestId>),
    Subscribe(
        Vec<(TopicFilter, SubscriptionOptions)>,
        SubscribeProperties,
        Reply<RequestId>,
    ),
    Unsubscribe(Vec<TopicFilter>, UnsubscribeProperties, Reply<RequestId>),
    Disconnect(Disconnect, Reply<()>),
}

/// What [`Client::connect`](super::Client::connect) waits for.
pub(super) struct Connected {
    pub(super) connack: Box<ConnAck>,
    pub(super) client_id: ByteString,
}

/// The state of the connection task.
pub(super) struct Connection<R, W> {
    reader: R,
    writer: W,
    session: ClientSession,
    decoder: Decoder,
    read_buf: BytesMut,
    write_buf: BytesMut,
    commands: mpsc::Receiver<Command>,
    /// False once every [`Client`](super::Client) is dropped.
    commands_open: bool,
    events: mpsc::Sender<Event>,
    /// Events the session produced that the channel has no room for yet.
    pending_events: VecDeque<Event>,
    /// Stop reading the socket while this many events are pending.
    event_high_water: usize,
    /// Stop taking commands while the session holds back this many publishes.
    queued_publish_limit: usize,
    /// Taken when CONNACK accepts the connection.
    connected: Option<oneshot::Sender<Connected>>,
    trace: Option<PacketTrace>,
    /// How the connection ends, decided by the event that closed the session.
    outcome: Result<(), ClientError>,
}

/// Waits until the event channel has room; false if nobody receives.
/// Cancel safe. The task is the only sender, so the room is still there
/// for [`deliver`] afterwards.
async fn has_room(events: &mpsc::Sender<Event>) -> bool {
    events.reserve().await.is_ok()
}

/// Sends pending events while the channel has room.
fn deliver(events: &mpsc::Sender<Event>, pending: &mut VecDeque<Event>) {
    while !pending.is_empty() {
        let Ok(permit) = events.try_reserve() else {
            break;
        };
        if let Some(event) = pending.pop_front() {
            permit.send(event);
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(super) fn new(
        reader: R,
        writer: W,
        options: ConnectOptions,
        config: &DriverConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        connected: oneshot::Sender<Connected>,
    ) -> Self {
        let decoder = Decoder::new(options.protocol, options.max_packet_size());
        Self {
            reader,
            writer,
            session: ClientSession::new(options),
            decoder,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            commands,
            commands_open: true,
            events,
            pending_events: VecDeque::new(),
            event_high_water: config.event_capacity.max(1),
            queued_publish_limit: config.command_capacity.max(1),
            connected: Some(connected),
            trace: config.trace.clone(),
            outcome: Ok(()),
        }
    }

    /// Runs the connection until the session closes or the socket fails.
    pub(super) async fn run(mut self) -> Result<(), ClientError> {
        self.session.start(now());
        loop {
            self.carry_out_outputs()?;
            if self.session.is_closed() {
                return self.close().await;
            }
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 2 {
                self.read_buf.reserve(READ_CHUNK);
            }
            let deadline = self.session.next_deadline();
            let take_commands = self.commands_open
                && self.write_buf.len() < WRITE_HIGH_WATER
                && self.session.queued_publishes() < self.queued_publish_limit;
            let read_more = self.pending_events.len() < self.event_high_water;
            tokio::select! {
                has_room = has_room(&self.events), if !self.pending_events.is_empty() => {
                    if has_room {
                        deliver(&self.events, &mut self.pending_events);
                    } else {
                        self.application_gone();
                    }
                }
                read = self.reader.read_buf(&mut self.read_buf), if read_more => match read {
                    Ok(0) => return self.fail(ClientError::ConnectionClosed).await,
                    Ok(_) => self.decode_packets(),
                    Err(error) => return self.fail(ClientError::Io(error)).await,
                },
                written = self.writer.write_buf(&mut self.write_buf), if !self.write_buf.is_empty() => {
                    match written {
                        Ok(0) => {
                            let error = std::io::ErrorKind::WriteZero.into();
                            return self.fail(ClientError::Io(error)).await;
                        }
                        Ok(_) => {}
                        Err(error) => return self.fail(ClientError::Io(error)).await,
                    }
                }
                command = self.commands.recv(), if take_commands => match command {
                    Some(command) => self.execute(command),
                    None => self.commands_open = false,
                },
                () = sleep_until(deadline.map_or_else(tokio::time::Instant::now, Into::into)),
                    if deadline.is_some() => self.session.tick(now()),
                () = self.events.closed(), if self.pending_events.is_empty() => {
                    self.application_gone();
                }
            }
        }
    }

    /// Encodes the packets the session wants sent and queues its events.
    fn carry_out_outputs(&mut self) -> Result<(), ClientError> {
        let version = self.session.protocol();
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Send(packet) => {
                    if let Some(trace) = &self.trace {
                        trace(Direction::Sent, &packet);
                    }
                    packet.encode(version, &mut self.write_buf)?;
                }
                Output::Event(event) => self.on_event(event),
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        let outcome = match &event {
            Event::Connected(connack) => {
                if let Some(connected) = self.connected.take() {
                    // Nobody waits only if `connect` was dropped; the
                    // closed event channel then ends the task.
                    let _ = connected.send(Connected {
                        connack: connack.clone(),
                        client_id: self.session.client_id().into(),
                    });
                }
                return;
            }
            Event::ConnectionRefused(connack) => ClientError::Refused(connack.clone()),
            Event::ConnectTimeout => ClientError::ConnectTimeout,
            Event::PingTimeout => ClientError::PingTimeout,
            Event::Disconnected(disconnect) => ClientError::Disconnected(disconnect.reason_code),
            Event::ProtocolViolation(error) => ClientError::Protocol(*error),
            Event::Message(_)
            | Event::PublishCompleted { .. }
            | Event::Subscribed { .. }
            | Event::Unsubscribed { .. } => {
                self.pending_events.push_back(event);
                return;
            }
        };
        self.outcome = Err(outcome);
        self.pending_events.push_back(event);
    }

    /// Decodes every whole packet buffered and hands it to the session.
    fn decode_packets(&mut self) {
        while !self.session.is_closed() {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(packet)) => {
                    if let Some(trace) = &self.trace {
                        trace(Direction::Received, &packet);
                    }
                    self.session.handle_packet(packet, now());
                }
                Ok(None) => break,
                Err(error) => self.session.handle_decode_error(error, now()),
            }
        }
    }

    fn execute(&mut self, command: Command) {
        let now = now();
        // A dropped reply means the caller stopped waiting: nothing to do.
        match command {
            Command::Publish(publish, reply) => {
                let _ = reply.send(self.session.publish(publish, now));
            }
            Command::Subscribe(filters, properties, reply) => {
                let _ = reply.send(self.session.subscribe(filters, properties, now));
            }
            Command::Unsubscribe(filters, properties, reply) => {
                let _ = reply.send(self.session.unsubscribe(filters, properties, now));
            }
            Command::Disconnect(disconnect, reply) => {
                let _ = reply.send(self.session.disconnect(disconnect, now));
            }
        }
    }

    /// Nobody receives events any more: end the connection normally.
    fn application_gone(&mut self) {
        self.pending_events.clear();
        // Fails only if the session has already closed, which is the goal.
        let _ = self.session.disconnect(Disconnect::default(), now());
    }

    /// Writes what is queued (a DISCONNECT, usually), closes the socket and
    /// hands over the remaining events.
    async fn close(mut self) -> Result<(), ClientError> {
        let flushed = timeout(CLOSE_TIMEOUT, async {
            self.writer.write_all_buf(&mut self.write_buf).await?;
            self.writer.shutdown().await
        })
        .await;
        if let Ok(Err(error)) = flushed
            && self.outcome.is_ok()
        {
            self.outcome = Err(ClientError::Io(error));
        }
        self.hand_over_events().await;
        self.outcome
    }

    /// The socket failed or the server hung up: hands over the events that
    /// arrived before, and ends with `error`.
    async fn fail(mut self, error: ClientError) -> Result<(), ClientError> {
        self.hand_over_events().await;
        Err(error)
    }

    async fn hand_over_events(&mut self) {
        for event in self.pending_events.drain(..) {
            if self.events.send(event).await.is_err() {
                break;
            }
        }
    }
}
