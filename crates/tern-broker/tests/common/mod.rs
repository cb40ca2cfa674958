//! A tiny MQTT client for the integration tests, written directly on
//! tern-codec and a tokio `TcpStream`, so that tests control every byte.
//! Every wait is bounded: a test fails instead of hanging.

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use tern_broker::{BrokerConfig, Server};
use tern_codec::{
    Ack, ConnAck, Connect, Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, SubAck,
    Subscribe, SubscriptionOptions, TopicFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a broker on `127.0.0.1:0` with sessions in memory.
pub async fn start() -> Result<(Server, SocketAddr)> {
    start_with(BrokerConfig::for_tests()).await
}

/// Starts a broker with `config`; returns it and its first address.
pub async fn start_with(config: BrokerConfig) -> Result<(Server, SocketAddr)> {
    let server = Server::start(config).await?;
    let address = server.local_addrs()[0];
    Ok((server, address))
}

pub fn id(value: u16) -> PacketId {
    NonZeroU16::new(value).expect("test ids are non-zero")
}

/// A PUBLISH with a packet identifier when the QoS needs one.
pub fn publish(topic: &str, payload: &str, qos: QoS, packet_id: u16) -> Publish {
    let mut publish = Publish::new(topic, payload.to_owned());
    publish.qos = qos;
    publish.packet_id = (qos != QoS::AtMostOnce).then(|| id(packet_id));
    publish
}

/// One raw connection to the broker.
pub struct TestClient {
    stream: TcpStream,
    decoder: Decoder,
    buffer: BytesMut,
    version: ProtocolVersion,
}

impl TestClient {
    /// Opens a TCP connection; nothing is sent.
    pub async fn open(address: SocketAddr, version: ProtocolVersion) -> Result<Self> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(address))
            .await
            .context("connecting timed out")??;
        Ok(Self {
            stream,
            decoder: Decoder::new(version, tern_codec::MAX_PACKET_SIZE),
            buffer: BytesMut::new(),
            version,
        })
    }

    /// Connects with `connect` and returns the CONNACK.
    pub async fn connect_with(address: SocketAddr, connect: Connect) -> Result<(Self, ConnAck)> {
        let mut client = Self::open(address, connect.protocol).await?;
        client.send(Packet::Connect(Box::new(connect))).await?;
        match client.recv().await? {
            Some(Packet::ConnAck(connack)) => Ok((client, *connack)),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with a clean start and no keep alive; fails unless accepted.
    pub async fn connect(
        address: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
    ) -> Result<Self> {
        let (client, connack) =
            Self::connect_with(address, Connect::new(version, client_id, 0)).await?;
        if !connack.reason_code.is_success() {
            bail!("connection refused: {:?}", connack.reason_code);
        }
        Ok(client)
    }

    pub async fn send(&mut self, packet: Packet) -> Result<()> {
        let mut bytes = BytesMut::new();
        packet.encode(self.version, &mut bytes)?;
        self.send_bytes(&bytes).await
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next packet, or `None` once the broker closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Packet>> {
        tokio::time::timeout(WAIT, self.recv_unbounded())
            .await
            .context("no packet within 5 s")?
    }

    async fn recv_unbounded(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buffer)? {
                return Ok(Some(packet));
            }
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                // A reset after the broker closed counts as closed.
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok(None);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Fails unless no packet arrives within `period`.
    pub async fn expect_silence(&mut self, period: Duration) -> Result<()> {
        match tokio::time::timeout(period, self.recv_unbounded()).await {
            Err(_) => Ok(()),
            Ok(received) => bail!("expected nothing, got {:?}", received?),
        }
    }

    /// Reads until the broker closes; returns what came before.
    pub async fn expect_closed(&mut self) -> Result<Vec<Packet>> {
        let mut packets = Vec::new();
        while let Some(packet) = self.recv().await? {
            packets.push(packet);
        }
        Ok(packets)
    }

    /// Subscribes to one filter and returns the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<SubAck> {
        self.subscribe_with(filter, SubscriptionOptions::with_qos(qos))
            .await
    }

    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<SubAck> {
        let filter = TopicFilter::new(filter)?;
        self.send(Packet::Subscribe(Subscribe {
            packet_id: id(1000),
            properties: Default::default(),
            filters: vec![(filter, options)],
        }))
        .await?;
        match self.recv().await? {
            Some(Packet::SubAck(suback)) => Ok(suback),
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the handshake its QoS needs; returns the
    /// last acknowledgement (PUBACK or PUBCOMP).
    pub async fn publish(&mut self, publish: Publish) -> Result<Option<Ack>> {
        let qos = publish.qos;
        self.send(Packet::Publish(publish)).await?;
        match qos {
            QoS::AtMostOnce => Ok(None),
            QoS::AtLeastOnce => match self.recv().await? {
                Some(Packet::PubAck(ack)) => Ok(Some(ack)),
                other => bail!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let pubrec = match self.recv().await? {
                    Some(Packet::PubRec(ack)) => ack,
                    other => bail!("expected PUBREC, got {other:?}"),
                };
                self.send(Packet::PubRel(Ack::new(pubrec.packet_id)))
                    .await?;
                match self.recv().await? {
                    Some(Packet::PubComp(ack)) => Ok(Some(ack)),
                    other => bail!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// The next PUBLISH (other packets are an error).
    pub async fn recv_publish(&mut self) -> Result<Publish> {
        match self.recv().await? {
            Some(Packet::Publish(publish)) => Ok(publish),
            other => bail!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Acknowledges a received PUBLISH completely (PUBACK, or PUBREC then
    /// PUBREL-PUBCOMP).
    pub async fn acknowledge(&mut self, publish: &Publish) -> Result<()> {
        let Some(packet_id) = publish.packet_id else {
            return Ok(());
        };
        if publish.qos == QoS::AtLeastOnce {
            return self.send(Packet::PubAck(Ack::new(packet_id))).await;
        }
        self.send(Packet::PubRec(Ack::new(packet_id))).await?;
        match self.recv().await? {
            Some(Packet::PubRel(ack)) if ack.packet_id == packet_id => {}
            other => bail!("expected PUBREL, got {other:?}"),
        }
        self.send(Packet::PubComp(Ack::new(packet_id))).await
    }

    /// Sends DISCONNECT and waits for the broker to close.
    pub async fn disconnect(mut self) -> Result<()> {
        self.send(Packet::Disconnect(Box::default())).await?;
        self.expect_closed().await?;
        Ok(())
    }
}
