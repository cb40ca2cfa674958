//! One bench connection: a socket, bound to a chosen source address before
//! connecting, and a [`ClientSession`] from tern-client, the one client
//! implementation.
//!
//! A socket bound to a source address takes no port at `bind()`
//! (`IP_BIND_ADDRESS_NO_PORT`): the kernel picks the port at `connect()`,
//! where any port not already used towards the same broker address will
//! do. A plain `bind(address, 0)` must find a port free for every
//! destination, and that search grows with the ports taken: it made the
//! bench, not the broker, the limit of connection floods past about 14,000
//! connections (docs/performance.md).
//!
//! Over TLS (`--cafile`), the handshake follows the TCP connect, and the
//! TLS stream is split into the same two halves a plain socket gives.
//!
//! The bench does not use tern-client's `Client` driver: the driver answers
//! every publish through a oneshot channel and connects without choosing a
//! source address. Instead each bench task owns a [`Link`] and runs the
//! session itself: it feeds the session what it reads, encodes everything
//! the session emits into one write buffer, and writes that buffer as a
//! whole, so a burst of publishes (or of acknowledgments) leaves in one
//! system call.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use tern_client::{ClientSession, ConnectOptions, Event, Output};
use tern_codec::{Decoder, Disconnect, QoS, SubscribeProperties, SubscriptionOptions, TopicFilter};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Duration, sleep_until, timeout};
use tokio_util::either::Either;

use super::error::BenchError;
use crate::tls::{TlsClient, TlsStream};

/// Stop producing while this many bytes wait to be written.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Read at least this much at a time once traffic flows.
const READ_CHUNK: usize = 16 * 1024;
/// How long connecting, subscribing and closing may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `socket` to `source`. With port 0 the port is left to `connect()`
/// ([`defer_port`]).
fn bind_source(socket: &TcpSocket, source: SocketAddr) -> io::Result<()> {
    if source.port() == 0 {
        defer_port(socket)?;
    }
    socket.bind(source)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2 and later) on `socket`, so that
/// binding it to port 0 reserves no port. socket2 0.6 has no call for it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn defer_port(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let enable: libc::c_int = 1;
    // SAFETY: the descriptor belongs to `socket`, which outlives the call;
    // the option value points to a live c_int and its size is passed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const enable).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere `bind()` takes a port as before.
#[cfg(not(target_os = "linux"))]
fn defer_port(_socket: &TcpSocket) -> io::Result<()> {
    Ok(())
}

/// The reading half of a connection: plain (left) or TLS (right).
type Reader = Either<OwnedReadHalf, ReadHalf<TlsStream>>;
/// The writing half of a connection: plain (left) or TLS (right).
type Writer = Either<OwnedWriteHalf, WriteHalf<TlsStream>>;

/// Whether a write may leave bytes behind that only a flush sends: TLS
/// takes the plaintext whole and writes its records as the socket allows,
/// keeping the rest until the next write or flush.
fn buffers(writer: &Writer) -> bool {
    matches!(writer, Either::Right(_))
}

/// An MQTT connection driven by a bench task.
pub struct Link {
    reader: Reader,
    writer: Writer,
    /// The protocol state: packet identifiers, acknowledgments, keep-alive.
    pub session: ClientSession,
    decoder: Decoder,
    read_buf: BytesMut,
    /// Encoded packets not yet written.
    pub write_buf: BytesMut,
    /// Written into TLS, perhaps not yet onto the socket: flush.
    unflushed: bool,
}

/// What happened while waiting on a link.
pub enum Wake {
    /// Bytes arrived and were handed to the session.
    Read,
    /// Some bytes were written.
    Wrote,
    /// The session's deadline passed and it was ticked.
    Ticked,
}

impl Link {
    /// Connects from `source` (any local address if `None`) to `target`,
    /// over TLS with `tls`, and waits for CONNACK.
    pub async fn connect(
        target: SocketAddr,
        source: Option<SocketAddr>,
        tls: Option<&TlsClient>,
        options: ConnectOptions,
    ) -> Result<Link, BenchError> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(BenchError::Socket)?;
        if let Some(source) = source {
            bind_source(&socket, source).map_err(|error| BenchError::Bind(source, error))?;
        }
        let stream = timeout(HANDSHAKE_TIMEOUT, socket.connect(target))
            .await
            .map_err(|_| BenchError::Timeout("TCP connect"))?
            .map_err(BenchError::Connect)?;
        stream.set_nodelay(true).map_err(BenchError::Socket)?;
        let (reader, writer) = match tls {
            None => {
                let (reader, writer) = stream.into_split();
                (Either::Left(reader), Either::Left(writer))
            }
            Some(tls) => {
                let stream = timeout(HANDSHAKE_TIMEOUT, tls.connect(stream))
                    .await
                    .map_err(|_| BenchError::Timeout("TLS handshake"))?
                    .map_err(BenchError::Tls)?;
                let (reader, writer) = tokio::io::split(stream);
                (Either::Right(reader), Either::Right(writer))
            }
        };
        let decoder = Decoder::new(options.protocol, options.max_packet_size());
        let mut link = Link {
            reader,
            writer,
            session: ClientSession::new(options),
            decoder,
            // Small until traffic flows, so that idle connections stay cheap.
            read_buf: BytesMut::with_capacity(256),
            write_buf: BytesMut::new(),
            unflushed: false,
        };
        link.session.start(Instant::now());
        link.handshake(|event| matches!(event, Event::Connected(_)), "CONNACK")
            .await?;
        Ok(link)
    }

    /// Subscribes to `filter` and waits for SUBACK; a refusal is an error.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), BenchError> {
        let filter =
            TopicFilter::new(filter).map_err(|error| BenchError::Filter(filter.into(), error))?;
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.session
            .subscribe(
                vec![(filter, options)],
                SubscribeProperties::default(),
                Instant::now(),
            )
            .map_err(BenchError::Command)?;
        let mut refused = None;
        self.handshake(
            |event| match event {
                Event::Subscribed { reason_codes, .. } => {
                    refused = reason_codes.iter().copied().find(|code| !code.is_success());
                    true
                }
                _ => false,
            },
            "SUBACK",
        )
        .await?;
        match refused {
            Some(code) => Err(BenchError::SubscribeRefused(code)),
            None => Ok(()),
        }
    }

    /// Runs the link until `done` accepts an event.
    async fn handshake(
        &mut self,
        mut done: impl FnMut(&Event) -> bool,
        waiting_for: &'static str,
    ) -> Result<(), BenchError> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            let mut finished = false;
            self.carry_out(|event| finished |= done(&event))?;
            if finished {
                return Ok(());
            }
            tokio::select! {
                wake = self.wait() => { wake?; }
                () = sleep_until(deadline) => return Err(BenchError::Timeout(waiting_for)),
            }
        }
    }

    /// Encodes the packets the session wants sent and passes its events to
    /// `on_event`. An event that ends the session becomes an error.
    pub fn carry_out(&mut self, mut on_event: impl FnMut(Event)) -> Result<(), BenchError> {
        let version = self.session.protocol();
        let mut ended = None;
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Send(packet) => packet
                    .encode(version, &mut self.write_buf)
                    .map_err(BenchError::Encode)?,
                Output::Event(event) => match event {
                    Event::ConnectionRefused(connack) => {
                        ended = Some(BenchError::Refused(connack.reason_code));
                    }
                    Event::ConnectTimeout => ended = Some(BenchError::Timeout("CONNACK")),
                    Event::PingTimeout => ended = Some(BenchError::Timeout("PINGRESP")),
                    Event::Disconnected(disconnect) => {
                        ended = Some(BenchError::Disconnected(disconnect.reason_code));
                    }
                    Event::ProtocolViolation(error) => ended = Some(BenchError::Protocol(error)),
                    other => on_event(other),
                },
            }
        }
        ended.map_or(Ok(()), Err)
    }

    /// Waits for the socket to deliver bytes, to take buffered bytes, or
    /// for the session's next deadline. Cancel safe.
    pub async fn wait(&mut self) -> Result<Wake, BenchError> {
        if self.read_buf.capacity() - self.read_buf.len() < 128 {
            let chunk = if self.read_buf.capacity() < READ_CHUNK {
                READ_CHUNK
            } else {
                self.read_buf.capacity()
            };
            self.read_buf.reserve(chunk);
        }
        let deadline = self.session.next_deadline();
        tokio::select! {
            read = self.reader.read_buf(&mut self.read_buf) => match read {
                Ok(0) => Err(BenchError::Closed),
                Ok(_) => {
                    self.decode();
                    Ok(Wake::Read)
                }
                Err(error) => Err(BenchError::Io(error)),
            },
            sent = send(&mut self.writer, &mut self.write_buf),
                if !self.write_buf.is_empty() || self.unflushed => {
                match sent {
                    Ok(Some(0)) => Err(BenchError::Closed),
                    Ok(Some(_)) => {
                        self.unflushed = buffers(&self.writer);
                        Ok(Wake::Wrote)
                    }
                    Ok(None) => {
                        self.unflushed = false;
                        Ok(Wake::Wrote)
                    }
                    Err(error) => Err(BenchError::Io(error)),
                }
            }
            () = sleep_until(deadline.map_or_else(tokio::time::Instant::now, Into::into)),
                if deadline.is_some() => {
                self.session.tick(Instant::now());
                Ok(Wake::Ticked)
            }
        }
    }

    /// Hands every whole packet buffered to the session.
    fn decode(&mut self) {
        let now = Instant::now();
        while !self.session.is_closed() {
            match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(packet)) => self.session.handle_packet(packet, now),
                Ok(None) => break,
                Err(error) => self.session.handle_decode_error(error, now),
            }
        }
    }

    /// Sends DISCONNECT, writes what is queued and closes the socket.
    pub async fn close(mut self) -> Result<(), BenchError> {
        // Fails only if the session has already closed.
        let _ = self
            .session
            .disconnect(Disconnect::default(), Instant::now());
        self.carry_out(|_| {})?;
        timeout(HANDSHAKE_TIMEOUT, async {
            self.writer.write_all_buf(&mut self.write_buf).await?;
            self.writer.shutdown().await
        })
        .await
        .map_err(|_| BenchError::Timeout("closing"))?
        .map_err(BenchError::Io)
    }
}

/// Writes some of `buf` (the count written), or with nothing left to
/// write flushes what the writer keeps (`None`). Cancel safe: both are one
/// poll of the writer at a time.
async fn send(writer: &mut Writer, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    if buf.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write_buf(buf).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_source_bound_socket_takes_its_port_at_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        bind_source(&socket, "127.0.0.2:0".parse().unwrap()).unwrap();
        // Bound to the address, but no port reserved yet.
        assert_eq!(socket.local_addr().unwrap().port(), 0);
        let stream = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let local = stream.local_addr().unwrap();
        assert_eq!(local.ip().to_string(), "127.0.0.2");
        assert_ne!(local.port(), 0);
    }

    #[tokio::test]
    async fn a_source_with_a_port_keeps_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        drop(taken);
        let socket = TcpSocket::new_v4().unwrap();
        bind_source(&socket, SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), port);
    }
}
