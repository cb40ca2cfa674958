//! The tokio driver against a scripted server on 127.0.0.1: the server
//! side is written packet by packet with the codec, so each test states
//! exactly what goes over the wire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tern_client::{Client, ClientError, ConnectOptions, Direction, DriverConfig, Event};
use tern_codec::{
    Ack, ConnAck, Decoder, MAX_PACKET_SIZE, Packet, PacketId, PacketType, ProtocolVersion, Publish,
    QoS, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(5);

/// The server end of one connection.
struct Peer {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
        Self {
            stream,
            // Decoding the CONNECT switches to the client's version.
            decoder: Decoder::new(ProtocolVersion::V5, MAX_PACKET_SIZE),
            buf: BytesMut::new(),
        }
    }

    /// The next packet from the client; `None` when it closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(packet);
            }
            let read = timeout(PATIENCE, self.stream.read_buf(&mut self.buf));
            if read.await.expect("client went silent").unwrap() == 0 {
                return None;
            }
        }
    }

    async fn expect(&mut self, packet_type: PacketType) -> Packet {
        let packet = self.next().await.expect("client closed the connection");
        assert_eq!(packet.packet_type(), packet_type, "got {packet:?}");
        packet
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.decoder.version(), &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn accept_connect(&mut self, connack: ConnAck) {
        self.expect(PacketType::Connect).await;
        self.send(Packet::ConnAck(Box::new(connack))).await;
    }
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

async fn next_event(events: &mut tern_client::Events) -> Event {
    timeout(PATIENCE, events.recv())
        .await
        .expect("no event in time")
        .expect("connection ended")
}

#[tokio::test]
async fn publishes_at_every_qos_receives_and_disconnects() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.accept_connect(ConnAck::new(ReasonCode::Success, false))
            .await;
        peer.expect(PacketType::Publish).await;
        let Packet::Publish(q1) = peer.expect(PacketType::Publish).await else {
            unreachable!()
        };
        assert_eq!((q1.qos, q1.packet_id), (QoS::AtLeastOnce, Some(pid(1))));
        peer.send(Packet::PubAck(Ack::new(pid(1)))).await;
        let Packet::Publish(q2) = peer.expect(PacketType::Publish).await else {
            unreachable!()
        };
        assert_eq!((q2.qos, q2.packet_id), (QoS::ExactlyOnce, Some(pid(2))));
        peer.send(Packet::PubRec(Ack::new(pid(2)))).await;
        peer.expect(PacketType::PubRel).await;
        peer.send(Packet::PubComp(Ack::new(pid(2)))).await;

        let mut incoming = Publish::new("to/client", "hello");
        incoming.qos = QoS::AtLeastOnce;
        incoming.packet_id = Some(pid(9));
        peer.send(Packet::Publish(incoming)).await;
        let Packet::PubAck(ack) = peer.expect(PacketType::PubAck).await else {
            unreachable!()
        };
        assert_eq!(ack.packet_id, pid(9));
        peer.expect(PacketType::Disconnect).await;
        assert_eq!(peer.next().await, None);
    });

    let traced = Arc::new(Mutex::new(Vec::new()));
    let trace_log = Arc::clone(&traced);
    let config = DriverConfig {
        trace: Some(Arc::new(move |direction, packet: &Packet| {
            trace_log
                .lock()
                .unwrap()
                .push((direction, packet.packet_type()));
        })),
        ..DriverConfig::default()
    };
    let options = ConnectOptions::new(ProtocolVersion::V5, "driver-test");
    let (client, mut events) = Client::connect(&addr, options, config).await.unwrap();
    assert_eq!(client.connack().reason_code, ReasonCode::Success);
    assert_eq!(client.client_id(), "driver-test");

    client.publish(Publish::new("a", "q0")).await.unwrap();
    let mut q1 = Publish::new("a", "q1");
    q1.qos = QoS::AtLeastOnce;
    let first = client.publish(q1).await.unwrap();
    let mut q2 = Publish::new("a", "q2");
    q2.qos = QoS::ExactlyOnce;
    let second = client.publish(q2).await.unwrap();

    for request in [first, second] {
        match next_event(&mut events).await {
            Event::PublishCompleted {
                request: done,
                reason,
                ..
            } => {
                assert_eq!((done, reason), (request, ReasonCode::Success));
            }
            other => panic!("expected a completion, got {other:?}"),
        }
    }
    match next_event(&mut events).await {
        Event::Message(message) => {
            assert_eq!(message.topic, "to/client");
            assert_eq!(&message.payload[..], b"hello");
        }
        other => panic!("expected a message, got {other:?}"),
    }
    client.disconnect_normally().await.unwrap();
    assert_eq!(timeout(PATIENCE, events.recv()).await.unwrap(), None);
    events.finish().await.unwrap();
    server.await.unwrap();

    let traced = traced.lock().unwrap();
    assert_eq!(
        traced.first(),
        Some(&(Direction::Sent, PacketType::Connect))
    );
    assert_eq!(traced[1], (Direction::Received, PacketType::ConnAck));
    assert_eq!(
        traced.last(),
        Some(&(Direction::Sent, PacketType::Disconnect))
    );
}

#[tokio::test]
async fn a_refusal_is_an_error_with_its_reason() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.accept_connect(ConnAck::new(ReasonCode::NotAuthorized, false))
            .await;
        assert_eq!(peer.next().await, None);
    });
    let options = ConnectOptions::new(ProtocolVersion::V3_1_1, "refused");
    let error = Client::connect(&addr, options, DriverConfig::default())
        .await
        .unwrap_err();
    match error {
        ClientError::Refused(connack) => assert_eq!(connack.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected a refusal, got {other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test]
async fn an_unanswered_ping_ends_the_connection() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.accept_connect(ConnAck::new(ReasonCode::Success, false))
            .await;
        peer.expect(PacketType::PingReq).await;
        // No PINGRESP: the client gives up and closes.
        assert_eq!(peer.next().await, None);
    });
    let mut options = ConnectOptions::new(ProtocolVersion::V5, "silent");
    options.keep_alive = 1;
    options.ping_timeout = Some(Duration::from_millis(200));
    let (_client, mut events) = Client::connect(&addr, options, DriverConfig::default())
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, Event::PingTimeout);
    assert!(matches!(
        events.finish().await,
        Err(ClientError::PingTimeout)
    ));
    server.await.unwrap();
}

#[tokio::test]
async fn a_server_that_hangs_up_is_reported_after_what_it_sent() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.accept_connect(ConnAck::new(ReasonCode::Success, false))
            .await;
        peer.expect(PacketType::Publish).await;
        // Acknowledge, then hang up at once.
        peer.send(Packet::PubAck(Ack::new(pid(1)))).await;
    });
    let options = ConnectOptions::new(ProtocolVersion::V3_1_1, "dropped");
    let (client, mut events) = Client::connect(&addr, options, DriverConfig::default())
        .await
        .unwrap();
    let mut message = Publish::new("a", "x");
    message.qos = QoS::AtLeastOnce;
    let request = client.publish(message).await.unwrap();
    server.await.unwrap();
    let completed = Event::PublishCompleted {
        request,
        packet_id: pid(1),
        reason: ReasonCode::Success,
    };
    assert_eq!(next_event(&mut events).await, completed);
    assert_eq!(timeout(PATIENCE, events.recv()).await.unwrap(), None);
    assert!(matches!(
        events.finish().await,
        Err(ClientError::ConnectionClosed)
    ));
}

#[tokio::test]
async fn nothing_listening_is_an_io_error() {
    let (listener, addr) = listen().await;
    drop(listener);
    let options = ConnectOptions::new(ProtocolVersion::V5, "nobody");
    let error = Client::connect(&addr, options, DriverConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Io(_)), "{error:?}");
}
