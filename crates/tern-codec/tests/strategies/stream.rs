//! Strategies for byte streams to throw at the decoder: random bodies
//! behind valid fixed headers, streams of valid packets, and mutations of
//! them. Only robustness.rs uses them.

#![allow(dead_code, reason = "roundtrip.rs includes the strategies too")]

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tern_codec::wire::{MAX_VARIABLE_INTEGER, parse_variable_integer, put_variable_integer};
use tern_codec::{MAX_PACKET_SIZE, Packet, PacketType, ProtocolVersion};

use super::{PACKET_TYPES, exists_in, packet, version};

/// Maximum packet sizes worth trying: tiny, typical and the protocol limit.
pub fn max_packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![Just(MAX_PACKET_SIZE), Just(65_536), 2..=64u32, 0..=1_000u32,]
}

/// A first byte with a valid type and flags for `version`.
pub fn valid_first_byte(version: ProtocolVersion) -> impl Strategy<Value = u8> {
    let types: Vec<_> = PACKET_TYPES
        .into_iter()
        .filter(|packet_type| exists_in(*packet_type, version))
        .collect();
    (proptest::sample::select(types), 0..6u8).prop_map(|(packet_type, publish_flags)| {
        let flags = match packet_type {
            // Retain, QoS 0..2, DUP only above QoS 0.
            PacketType::Publish => [0x0, 0x1, 0x2, 0x3, 0xC, 0xD][usize::from(publish_flags)],
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        };
        (packet_type as u8) << 4 | flags
    })
}

/// A fixed header with a correct remaining length and a random body: gets
/// random bytes past the fixed header into the body parsers.
pub fn framed_random(version: ProtocolVersion) -> impl Strategy<Value = Vec<u8>> {
    (valid_first_byte(version), vec(any::<u8>(), 0..200)).prop_map(|(first, body)| {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[first]);
        put_variable_integer(&mut wire, body.len() as u32);
        wire.extend_from_slice(&body);
        wire.to_vec()
    })
}

/// Encodes valid `packets` back to back.
pub fn encode_all(version: ProtocolVersion, packets: &[Packet]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    for packet in packets {
        packet
            .encode(version, &mut wire)
            .expect("valid packets encode");
    }
    wire.to_vec()
}

/// Valid packets for one version, encoded back to back.
pub fn valid_stream() -> impl Strategy<Value = (ProtocolVersion, Vec<Packet>)> {
    version().prop_flat_map(|version| (Just(version), vec(packet(version), 1..4)))
}

/// One change to an encoded stream.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit of one byte.
    Flip(Index, u8),
    /// Overwrites one byte.
    Replace(Index, u8),
    /// Inserts one byte.
    Insert(Index, u8),
    /// Removes one byte.
    Delete(Index),
    /// Rewrites the first packet's remaining length.
    RemainingLength(u32),
}

/// Any mutation, each kind equally likely.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Delete),
        prop_oneof![0..300u32, 0..=MAX_VARIABLE_INTEGER].prop_map(Mutation::RemainingLength),
    ]
}

/// Applies `mutation` to `wire`; an empty stream stays empty.
pub fn apply(wire: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        _ if wire.is_empty() => {}
        Mutation::Flip(at, bit) => {
            let at = at.index(wire.len());
            wire[at] ^= 1 << bit;
        }
        Mutation::Replace(at, byte) => {
            let at = at.index(wire.len());
            wire[at] = *byte;
        }
        Mutation::Insert(at, byte) => wire.insert(at.index(wire.len() + 1), *byte),
        Mutation::Delete(at) => {
            wire.remove(at.index(wire.len()));
        }
        Mutation::RemainingLength(length) => {
            if let Ok(Some((_, len))) = parse_variable_integer(&wire[1..]) {
                let mut header = BytesMut::new();
                put_variable_integer(&mut header, *length);
                wire.splice(1..1 + len, header.iter().copied());
            }
        }
    }
}
