//! `-d/--debug`: one line on standard error for every packet sent and
//! received, in the style of mosquitto's clients. Payloads are not shown,
//! only their length.

use std::fmt::Write as _;
use std::sync::Arc;

use tern_client::{Direction, PacketTrace};
use tern_codec::{Ack, Packet, PacketType};

/// A packet trace that prints to standard error.
pub fn to_stderr(client_id: String) -> PacketTrace {
    Arc::new(move |direction, packet| {
        let verb = match direction {
            Direction::Sent => "sending",
            Direction::Received => "received",
        };
        eprintln!("Client {client_id} {verb} {}", describe(packet));
    })
}

/// One line describing a packet.
pub fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Connect(connect) => {
            let mut line = format!(
                "CONNECT ({}, clean {}, keep alive {}, id '{}'",
                connect.protocol,
                u8::from(connect.clean_start),
                connect.keep_alive,
                connect.client_id
            );
            if let Some(will) = &connect.will {
                let _ = write!(line, ", will '{}' q{}", will.topic, will.qos.as_u8());
            }
            if let Some(user) = &connect.username {
                let _ = write!(line, ", user '{user}'");
            }
            line + ")"
        }
        Packet::ConnAck(connack) => format!(
            "CONNACK (session present {}, {})",
            u8::from(connack.session_present),
            connack.reason_code
        ),
        Packet::Publish(publish) => format!(
            "PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            u8::from(publish.dup),
            publish.qos.as_u8(),
            u8::from(publish.retain),
            publish.packet_id.map_or(0, |id| id.get()),
            publish.topic,
            publish.payload.len()
        ),
        Packet::PubAck(ack) => describe_ack(PacketType::PubAck, ack),
        Packet::PubRec(ack) => describe_ack(PacketType::PubRec, ack),
        Packet::PubRel(ack) => describe_ack(PacketType::PubRel, ack),
        Packet::PubComp(ack) => describe_ack(PacketType::PubComp, ack),
        Packet::Subscribe(subscribe) => {
            let filters: Vec<String> = subscribe
                .filters
                .iter()
                .map(|(filter, options)| format!("'{filter}' q{}", options.qos.as_u8()))
                .collect();
            format!(
                "SUBSCRIBE (m{}, {})",
                subscribe.packet_id,
                filters.join(", ")
            )
        }
        Packet::SubAck(suback) => {
            let codes: Vec<String> = suback
                .reason_codes
                .iter()
                .map(|code| code.to_string())
                .collect();
            format!("SUBACK (m{}, {})", suback.packet_id, codes.join(", "))
        }
        Packet::Unsubscribe(unsubscribe) => {
            let filters: Vec<String> = unsubscribe
                .filters
                .iter()
                .map(|filter| format!("'{filter}'"))
                .collect();
            format!(
                "UNSUBSCRIBE (m{}, {})",
                unsubscribe.packet_id,
                filters.join(", ")
            )
        }
        Packet::UnsubAck(unsuback) => format!("UNSUBACK (m{})", unsuback.packet_id),
        Packet::Disconnect(disconnect) => format!("DISCONNECT ({})", disconnect.reason_code),
        Packet::PingReq | Packet::PingResp | Packet::Auth(_) => packet.packet_type().to_string(),
    }
}

fn describe_ack(packet: PacketType, ack: &Ack) -> String {
    format!("{packet} (m{}, {})", ack.packet_id, ack.reason_code)
}

#[cfg(test)]
mod tests {
    use tern_codec::{PacketId, Publish, QoS};

    use super::*;

    #[test]
    fn publishes_show_flags_and_length_but_not_the_payload() {
        let mut publish = Publish::new("a/b", "secret");
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = PacketId::new(3);
        publish.retain = true;
        assert_eq!(
            describe(&Packet::Publish(publish)),
            "PUBLISH (d0, q1, r1, m3, 'a/b', ... (6 bytes))"
        );
        let ack = Ack::new(PacketId::new(3).unwrap());
        assert_eq!(
            describe(&Packet::PubAck(ack)),
            "PUBACK (m3, success (0x00))"
        );
    }
}
