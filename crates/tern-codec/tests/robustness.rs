//! The decoder faces untrusted bytes: random input, truncated packets and
//! mutated packets must never make it panic, loop, buffer past the maximum
//! packet size, or allocate more than a small multiple of the input. Every
//! error variant is also pinned to a hand-written input, with the reason code
//! a server would answer it with.

// The workspace denies unsafe code. This test binary needs one unsafe impl:
// a counting global allocator (a thin wrapper over `System`) that measures
// how much memory a single `Decoder::decode` call allocates.
#![allow(unsafe_code)]

mod strategies;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use strategies::stream::{
    apply, encode_all, framed_random, max_packet_size, mutation, valid_first_byte, valid_stream,
};
use strategies::{any_versioned_packet, version};
use tern_codec::wire::{parse_variable_integer, put_variable_integer};
use tern_codec::{DecodeError, Decoder, MAX_PACKET_SIZE, Packet, PacketType, ProtocolVersion};

/// Cases per property.
const CASES: u32 = 512;

/// Allowed allocation per decode call: this many bytes per input byte...
const ALLOCATION_FACTOR: usize = 16;
/// ...plus this many: the boxed CONNECT and CONNACK values and the shared
/// buffer header that splitting a `BytesMut` creates.
const ALLOCATION_SLACK: usize = 2048;

thread_local! {
    /// Whether this thread's allocations are being counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Bytes this thread allocated while counting; a reallocation counts
    /// its whole new size.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated and not yet freed since counting started...
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// ...and the most of them at any one time.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// `System`, counting the bytes each thread asks for while it is measuring.
/// Thread-local counters keep parallel test threads apart; `const` cells
/// with no destructor are safe to touch from inside the allocator.
struct CountingAllocator;

/// Records `allocated` new bytes and a change of `live` bytes.
fn record(allocated: usize, live: isize) {
    if !COUNTING.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _ = ALLOCATED.try_with(|total| total.set(total.get().saturating_add(allocated)));
    let _ = LIVE.try_with(|current| {
        current.set(current.get().saturating_add(live));
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(current.get())));
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only
// adds to thread-local counters, which neither allocates nor panics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size(), layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size(), layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(0, -(layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size, new_size as isize - layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// What one measured call allocated on its thread.
#[derive(Debug, Clone, Copy)]
struct Allocation {
    /// Every byte asked for, reallocations included.
    total: usize,
    /// The most bytes held at once.
    peak: usize,
}

/// Runs `f` and returns what it produced and what it allocated on this
/// thread.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, Allocation) {
    ALLOCATED.with(|total| total.set(0));
    LIVE.with(|live| live.set(0));
    PEAK.with(|peak| peak.set(0));
    COUNTING.with(|counting| counting.set(true));
    let result = f();
    COUNTING.with(|counting| counting.set(false));
    let allocation = Allocation {
        total: ALLOCATED.with(Cell::get),
        peak: PEAK.with(Cell::get).max(0) as usize,
    };
    (result, allocation)
}

/// One decode call, with its allocation checked against the input size.
fn decode_measured(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> Result<Result<Option<Packet>, DecodeError>, TestCaseError> {
    let input = buf.len();
    let (result, allocated) = allocated_by(|| decoder.decode(buf));
    prop_assert!(
        allocated.total <= ALLOCATION_FACTOR * input + ALLOCATION_SLACK,
        "decoding {input} bytes allocated {allocated:?} ({result:?})"
    );
    Ok(result)
}

/// A V3_1 CONNACK with the session present bit decodes as present, but the
/// 3.1 encoder never writes the bit (see `v3_1_connack_flag_round_trips`).
fn is_known_v3_1_connack_asymmetry(version: ProtocolVersion, packet: &Packet) -> bool {
    matches!(packet, Packet::ConnAck(connack)
        if version == ProtocolVersion::V3_1 && connack.session_present)
}

/// Re-encodes a decoded packet: the encoder accepts whatever the decoder
/// produced, gives back exactly the bytes the packet came from (the codec
/// keeps the wire order of properties and the optional fields that were
/// sent), and those decode to an equal packet.
fn check_reencodes(
    version: ProtocolVersion,
    packet: &Packet,
    original: &[u8],
) -> Result<(), TestCaseError> {
    let mut wire = BytesMut::new();
    let encoded = packet.encode(version, &mut wire);
    prop_assert_eq!(encoded, Ok(()), "{:?}", packet);
    if is_known_v3_1_connack_asymmetry(version, packet) {
        return Ok(());
    }
    prop_assert_eq!(&wire[..], original, "{:?}", packet);
    let again = Decoder::new(version, MAX_PACKET_SIZE).decode(&mut wire);
    prop_assert_eq!(again, Ok(Some(packet.clone())));
    Ok(())
}

/// Decodes `input` as a stream until the decoder needs more or fails. Every
/// call must make progress or stop; no packet may exceed `max`; nothing over
/// `max` may be waited for; every packet re-encodes to the bytes it came
/// from. Returns the
/// packets and the error, if any.
fn drain(
    version: ProtocolVersion,
    max: u32,
    input: &[u8],
) -> Result<(Vec<Packet>, Option<DecodeError>), TestCaseError> {
    let mut decoder = Decoder::new(version, max);
    let mut buf = BytesMut::from(input);
    let mut packets = Vec::new();
    // Each packet takes at least two bytes, so this bounds the loop.
    for _ in 0..=input.len() / 2 {
        let before = buf.len();
        let version_before = decoder.version();
        match decode_measured(&mut decoder, &mut buf)? {
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "\"need more\" consumed bytes");
                // Either the fixed header is incomplete (at most 4 bytes) or
                // the packet announced fits the limit and is still short.
                prop_assert!(buf.len() < (max as usize).max(5));
                return Ok((packets, None));
            }
            Ok(Some(packet)) => {
                let consumed = before - buf.len();
                prop_assert!(consumed >= 2);
                prop_assert!(consumed <= max as usize, "{consumed} > {max}");
                let start = input.len() - before;
                check_reencodes(version_before, &packet, &input[start..start + consumed])?;
                packets.push(packet);
            }
            Err(error) => {
                // Every error names a reason and prints.
                let _ = error.reason_code();
                prop_assert!(!error.to_string().is_empty());
                return Ok((packets, Some(error)));
            }
        }
    }
    Err(TestCaseError::fail("the decoder kept returning packets"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn random_bytes_never_panic(
        version in version(),
        max in max_packet_size(),
        input in vec(any::<u8>(), 0..512),
    ) {
        drain(version, max, &input)?;
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(
        (version, input) in version().prop_flat_map(|v| (Just(v), framed_random(v))),
        max in max_packet_size(),
    ) {
        let (packets, error) = drain(version, max, &input)?;
        // A whole packet is in the buffer: the decoder must give a verdict.
        prop_assert!(packets.len() == 1 || error.is_some());
    }

    #[test]
    fn truncated_streams_give_their_whole_packets_then_need_more(
        (version, packets) in valid_stream(),
        cut in any::<Index>(),
    ) {
        let wire = encode_all(version, &packets);
        let cut = cut.index(wire.len());
        let (decoded, error) = drain(version, MAX_PACKET_SIZE, &wire[..cut])?;
        prop_assert_eq!(error, None);
        prop_assert!(decoded.len() < packets.len());
        prop_assert_eq!(&decoded[..], &packets[..decoded.len()]);
    }

    #[test]
    fn bodies_cut_short_behind_honest_headers_are_decided(
        (version, packet) in any_versioned_packet(),
        cut in any::<Index>(),
    ) {
        let wire = encode_all(version, &[packet]);
        let (_, header_len) = parse_variable_integer(&wire[1..]).unwrap().unwrap();
        let body = &wire[1 + header_len..];
        let body = &body[..cut.index(body.len() + 1)];
        let mut input = BytesMut::new();
        input.extend_from_slice(&wire[..1]);
        put_variable_integer(&mut input, body.len() as u32);
        input.extend_from_slice(body);
        let (decoded, error) = drain(version, MAX_PACKET_SIZE, &input)?;
        prop_assert!(decoded.len() == 1 || error.is_some());
    }

    #[test]
    fn mutated_packets_never_panic(
        (version, packets) in valid_stream(),
        mutations in vec(mutation(), 1..6),
        max in max_packet_size(),
    ) {
        let mut wire = encode_all(version, &packets);
        for mutation in &mutations {
            apply(&mut wire, mutation);
        }
        drain(version, max, &wire)?;
    }

    /// The size check happens on the fixed header alone: nothing of the body
    /// needs to arrive for an oversized packet to be refused.
    #[test]
    fn oversized_packets_are_refused_from_the_fixed_header(
        (version, first) in version().prop_flat_map(|v| (Just(v), valid_first_byte(v))),
        max in 0..100_000u32,
        excess in prop_oneof![1..=10u32, 1..=tern_codec::wire::MAX_VARIABLE_INTEGER],
        body_present in 0..64usize,
    ) {
        // A remaining length that makes the whole packet `excess` bytes too big
        // (or as big as a remaining length goes).
        let remaining = max.saturating_add(excess).min(tern_codec::wire::MAX_VARIABLE_INTEGER);
        let mut header = BytesMut::new();
        header.extend_from_slice(&[first]);
        put_variable_integer(&mut header, remaining);
        let size = header.len() as u32 + remaining;
        prop_assume!(size > max);
        let mut buf = header.clone();
        buf.extend_from_slice(&vec![0; body_present.min(remaining as usize)]);
        let mut decoder = Decoder::new(version, max);
        let result = decode_measured(&mut decoder, &mut buf)?;
        prop_assert_eq!(result, Err(DecodeError::PacketTooLarge { size, max }));
        prop_assert_eq!(
            DecodeError::PacketTooLarge { size, max }.reason_code(),
            tern_codec::ReasonCode::PacketTooLarge
        );
        // An incomplete fixed header is still "need more", whatever the limit.
        let mut partial = BytesMut::from(&header[..header.len() - 1]);
        prop_assert_eq!(decoder.decode(&mut partial), Ok(None));
    }
}

/// Bytes allocated per input byte (in total, and held at the peak) by a
/// packet of about 60 KB made of one small item repeated, then `suffix`.
fn allocation_factors(first: u8, prefix: &[u8], item: &[u8], suffix: &[u8]) -> (f64, f64) {
    let count = (60_000 - prefix.len()) / item.len();
    let mut body = prefix.to_vec();
    let mut repeated: Vec<u8> = item
        .iter()
        .copied()
        .cycle()
        .take(count * item.len())
        .collect();
    repeated.extend_from_slice(suffix);
    if first >> 4 == PacketType::Publish as u8 {
        // PUBLISH: the items are properties, behind their length.
        let mut length = BytesMut::new();
        put_variable_integer(&mut length, repeated.len() as u32);
        body.extend_from_slice(&length);
    }
    body.extend_from_slice(&repeated);
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&[first]);
    put_variable_integer(&mut wire, body.len() as u32);
    wire.extend_from_slice(&body);
    let input = wire.len() as f64;
    let mut decoder = Decoder::new(ProtocolVersion::V5, MAX_PACKET_SIZE);
    let (result, allocated) = allocated_by(|| decoder.decode(&mut wire));
    assert!(matches!(result, Ok(Some(_))), "{result:?}");
    (
        allocated.total as f64 / input,
        allocated.peak as f64 / input,
    )
}

/// The worst shapes we know of. A `Vec` element is far larger than the few
/// wire bytes that produce it (a user property is two `ByteString`s, 64
/// bytes, from 5 bytes; a topic filter 40 bytes from 3), and `Vec` doubling
/// adds as much again (recording the order of properties that arrive out of
/// ascending order adds one byte per property). These exceed
/// `ALLOCATION_FACTOR`, which random and mutated input stay well under; this
/// test keeps them from growing.
#[test]
fn allocation_of_the_worst_shapes_stays_bounded() {
    let user_property = &b"\x26\x00\x00\x00\x00"[..];
    let cases = [
        // PUBLISH "t" with empty user properties (5 bytes each).
        (
            "PUBLISH user properties",
            0x30,
            &b"\x00\x01t"[..],
            user_property,
            &b""[..],
        ),
        // The same, then a payload format indicator: out of ascending order.
        (
            "PUBLISH user properties, unordered",
            0x30,
            b"\x00\x01t",
            user_property,
            b"\x01\x00",
        ),
        // PUBLISH "t" with subscription identifiers (2 bytes each).
        (
            "PUBLISH subscription ids",
            0x30,
            b"\x00\x01t",
            b"\x0B\x01",
            b"",
        ),
        // SUBSCRIBE with one-character filters (4 bytes each).
        (
            "SUBSCRIBE filters",
            0x82,
            b"\x00\x01\x00",
            b"\x00\x01a\x00",
            b"",
        ),
        // UNSUBSCRIBE with one-character filters (3 bytes each).
        (
            "UNSUBSCRIBE filters",
            0xA2,
            b"\x00\x01\x00",
            b"\x00\x01a",
            b"",
        ),
        // SUBACK granting QoS 0 (1 byte each).
        ("SUBACK codes", 0x90, b"\x00\x01\x00", b"\x00", b""),
    ];
    for (name, first, prefix, item, suffix) in cases {
        let (total, peak) = allocation_factors(first, prefix, item, suffix);
        println!("{name}: {total:.1} bytes allocated, {peak:.1} held at peak, per input byte");
        assert!(
            total <= 48.0 && peak <= 24.0,
            "{name}: {total:.1}x, peak {peak:.1}x"
        );
    }
}

/// A 3.1 CONNACK's first byte is reserved (3.1 has no session present
/// flag): the decoder refuses a set bit rather than reading it as a flag the
/// 3.1 encoder could never write back.
#[test]
fn v3_1_connack_reserved_byte_is_refused() {
    let mut buf = BytesMut::from(&[0x20, 0x02, 0x01, 0x00][..]);
    let mut decoder = Decoder::new(ProtocolVersion::V3_1, MAX_PACKET_SIZE);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::InvalidConnackFlags)
    );
    let mut buf = BytesMut::from(&[0x20, 0x02, 0x00, 0x00][..]);
    let packet = decoder.decode(&mut buf).unwrap().unwrap();
    let mut wire = BytesMut::new();
    packet.encode(ProtocolVersion::V3_1, &mut wire).unwrap();
    assert_eq!(&wire[..], [0x20, 0x02, 0x00, 0x00]);
}

/// Hand-written malformed packets, one or more per [`DecodeError`] variant.
mod malformed {
    use bytes::BytesMut;
    use tern_codec::topic::TopicError;
    use tern_codec::{
        DecodeError, Decoder, MAX_PACKET_SIZE, PacketType, PropertyId, ProtocolVersion, ReasonCode,
    };

    use DecodeError::*;
    use ProtocolVersion::{V3_1, V3_1_1, V5};
    use ReasonCode::{
        MalformedPacket, ProtocolError, TopicAliasInvalid, TopicFilterInvalid, TopicNameInvalid,
        UnsupportedProtocolVersion,
    };

    struct Case {
        name: &'static str,
        version: ProtocolVersion,
        max: u32,
        bytes: Vec<u8>,
        error: DecodeError,
        reason: ReasonCode,
    }

    fn case(
        name: &'static str,
        version: ProtocolVersion,
        bytes: Vec<u8>,
        error: DecodeError,
        reason: ReasonCode,
    ) -> Case {
        Case {
            name,
            version,
            max: MAX_PACKET_SIZE,
            bytes,
            error,
            reason,
        }
    }

    /// A packet with a one-byte remaining length.
    fn frame(first: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        let mut wire = vec![first, body.len() as u8];
        wire.extend_from_slice(body);
        wire
    }

    /// A CONNECT with keep alive 60, an empty property section for level 5,
    /// then `payload`.
    fn connect(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
        if level == 5 {
            body.push(0x00);
        }
        body.extend_from_slice(payload);
        frame(0x10, &body)
    }

    /// `name, version, bytes => error, reason;` per case.
    macro_rules! cases {
        ($($name:literal, $version:expr, $bytes:expr => $error:expr, $reason:expr;)*) => {
            vec![$(case($name, $version, $bytes, $error, $reason)),*]
        };
    }

    fn cases() -> Vec<Case> {
        let mut cases = cases! {
            "remaining length of five bytes", V3_1_1, vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01] => MalformedVariableInteger, MalformedPacket;
            "non-minimal remaining length", V3_1_1, vec![0xC0, 0x80, 0x00] => MalformedVariableInteger, MalformedPacket;
            "non-minimal property length", V5, frame(0x40, &[0, 1, 0x10, 0x80, 0x00]) => MalformedVariableInteger, MalformedPacket;
            "packet type 0", V5, vec![0x00, 0x00] => ReservedPacketType(0), MalformedPacket;
            "packet type 15 in 3.1.1", V3_1_1, vec![0xF0, 0x00] => ReservedPacketType(15), MalformedPacket;
            "packet type 15 in 3.1", V3_1, vec![0xF0, 0x00] => ReservedPacketType(15), MalformedPacket;
            "PUBREL without flag 1", V3_1_1, frame(0x60, &[0, 1]) => InvalidFlags { packet: PacketType::PubRel, flags: 0 }, MalformedPacket;
            "SUBSCRIBE with flags 3", V5, vec![0x83] => InvalidFlags { packet: PacketType::Subscribe, flags: 3 }, MalformedPacket;
            "PINGREQ with a flag", V3_1, vec![0xC1, 0x00] => InvalidFlags { packet: PacketType::PingReq, flags: 1 }, MalformedPacket;
            "PUBLISH QoS 3", V3_1_1, frame(0x36, b"\x00\x01t\x00\x01") => InvalidQos(3), MalformedPacket;
            "DUP on QoS 0", V5, frame(0x38, b"\x00\x01t\x00") => DupWithQos0, MalformedPacket;
            "string runs past the packet", V3_1_1, frame(0x30, b"\x00\x05t") => Truncated, MalformedPacket;
            "PUBACK of one byte", V5, vec![0x40, 0x01, 0x00] => Truncated, MalformedPacket;
            "property runs past its section", V5, frame(0x30, b"\x00\x01t\x02\x02\x00\x00\x00\x3c") => Truncated, MalformedPacket;
            "PINGREQ with a body", V5, vec![0xC0, 0x01, 0x00] => TrailingBytes(PacketType::PingReq), MalformedPacket;
            "3.1.1 PUBACK with a reason code", V3_1_1, frame(0x40, &[0, 1, 0]) => TrailingBytes(PacketType::PubAck), MalformedPacket;
            "3.1 DISCONNECT with a body", V3_1, frame(0xE0, &[0]) => TrailingBytes(PacketType::Disconnect), MalformedPacket;
            "invalid UTF-8", V3_1_1, frame(0x30, &[0, 2, 0xC3, 0x28]) => InvalidUtf8, MalformedPacket;
            "encoded surrogate U+D800", V5, frame(0x30, &[0, 3, 0xED, 0xA0, 0x80, 0]) => InvalidUtf8, MalformedPacket;
            "overlong encoding of '/'", V3_1, frame(0x30, &[0, 2, 0xC0, 0xAF]) => InvalidUtf8, MalformedPacket;
            "U+0000 in a topic", V3_1_1, frame(0x30, b"\x00\x03a\x00b") => NullCharacter, MalformedPacket;
            "U+0000 in a client id", V3_1_1, connect(b"MQTT", 4, 0x02, b"\x00\x02c\x00") => NullCharacter, MalformedPacket;
            "U+0000 in a user property", V5, frame(0x30, b"\x00\x01t\x06\x26\x00\x00\x00\x01\x00") => NullCharacter, MalformedPacket;
            "wildcard in a topic name", V3_1_1, frame(0x30, b"\x00\x03a/+") => InvalidTopicName(TopicError::WildcardInName), TopicNameInvalid;
            "empty topic before MQTT 5", V3_1_1, frame(0x30, b"\x00\x00") => InvalidTopicName(TopicError::Empty), TopicNameInvalid;
            "wildcard in a will topic", V3_1_1, connect(b"MQTT", 4, 0x06, b"\x00\x01c\x00\x03w/#\x00\x00") => InvalidTopicName(TopicError::WildcardInName), TopicNameInvalid;
            "'#' not last", V3_1_1, frame(0x82, b"\x00\x01\x00\x05a/#/b\x00") => InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard), TopicFilterInvalid;
            "'+' not a whole level", V5, frame(0xA2, b"\x00\x01\x00\x00\x02a+") => InvalidTopicFilter(TopicError::MisplacedSingleLevelWildcard), TopicFilterInvalid;
            "shared filter without a group", V5, frame(0xA2, b"\x00\x01\x00\x00\x09$share//a") => InvalidTopicFilter(TopicError::InvalidShareName), TopicFilterInvalid;
            "PUBACK packet id 0", V3_1_1, frame(0x40, &[0, 0]) => ZeroPacketId, ProtocolError;
            "QoS 1 PUBLISH packet id 0", V5, frame(0x32, b"\x00\x01t\x00\x00\x00") => ZeroPacketId, ProtocolError;
            "SUBSCRIBE packet id 0", V3_1, frame(0x82, b"\x00\x00\x00\x01a\x00") => ZeroPacketId, ProtocolError;
            "protocol name MQTX", V3_1_1, connect(b"MQTX", 4, 0x02, b"\x00\x01c") => InvalidProtocolName, UnsupportedProtocolVersion;
            "protocol level 6", V3_1_1, connect(b"MQTT", 6, 0x02, b"\x00\x01c") => UnsupportedProtocolLevel(6), UnsupportedProtocolVersion;
            "reserved CONNECT flag", V3_1_1, connect(b"MQTT", 4, 0x03, b"\x00\x01c") => ConnectReservedFlag, MalformedPacket;
            "will QoS without a will", V3_1_1, connect(b"MQTT", 4, 0x0A, b"\x00\x01c") => InvalidWillFlags, MalformedPacket;
            "will retain without a will", V5, connect(b"MQTT", 5, 0x22, b"\x00\x01c") => InvalidWillFlags, MalformedPacket;
            // The doc of InvalidWillFlags promises it for will QoS 3 as well;
            // the decoder answers InvalidQos(3) (same reason code).
            "will QoS 3", V3_1_1, connect(b"MQTT", 4, 0x1E, b"\x00\x01c\x00\x01w\x00\x00") => InvalidQos(3), MalformedPacket;
            "password without user name in 3.1.1", V3_1_1, connect(b"MQTT", 4, 0x42, b"\x00\x01c\x00\x02pw") => PasswordWithoutUsername(V3_1_1), MalformedPacket;
            "password without user name in 3.1", V3_1, connect(b"MQIsdp", 3, 0x42, b"\x00\x01c\x00\x02pw") => PasswordWithoutUsername(V3_1), MalformedPacket;
            "CONNACK reserved flag bits", V3_1_1, vec![0x20, 0x02, 0x02, 0x00] => InvalidConnackFlags, MalformedPacket;
            "session present on a 3.1.1 refusal", V3_1_1, vec![0x20, 0x02, 0x01, 0x05] => SessionPresentOnRefusal, ProtocolError;
            "session present on a 5.0 refusal", V5, vec![0x20, 0x03, 0x01, 0x87, 0x00] => SessionPresentOnRefusal, ProtocolError;
            "empty topic without alias", V5, frame(0x30, b"\x00\x00\x00") => EmptyTopicWithoutAlias, ProtocolError;
            "empty SUBSCRIBE", V3_1_1, vec![0x82, 0x02, 0x00, 0x01] => NoTopicFilters(PacketType::Subscribe), ProtocolError;
            "empty UNSUBSCRIBE", V5, frame(0xA2, &[0, 1, 0]) => NoTopicFilters(PacketType::Unsubscribe), ProtocolError;
            "SUBACK without codes", V3_1_1, vec![0x90, 0x02, 0x00, 0x01] => NoReasonCodes(PacketType::SubAck), ProtocolError;
            "v5 UNSUBACK without codes", V5, frame(0xB0, &[0, 1, 0]) => NoReasonCodes(PacketType::UnsubAck), ProtocolError;
            "no local in 3.1.1", V3_1_1, frame(0x82, b"\x00\x01\x00\x01a\x04") => ReservedSubscriptionOptionBits(0x04), MalformedPacket;
            "reserved option bits in 5.0", V5, frame(0x82, b"\x00\x01\x00\x00\x01a\x40") => ReservedSubscriptionOptionBits(0x40), MalformedPacket;
            "subscription QoS 3", V3_1_1, frame(0x82, b"\x00\x01\x00\x01a\x03") => InvalidQos(3), MalformedPacket;
            "retain handling 3", V5, frame(0x82, b"\x00\x01\x00\x00\x01a\x30") => InvalidRetainHandling, ProtocolError;
            "no local on a shared subscription", V5, frame(0x82, b"\x00\x01\x00\x00\x0a$share/g/t\x04") => NoLocalOnSharedSubscription, ProtocolError;
            "unknown property 0x7F", V5, frame(0x30, b"\x00\x01t\x02\x7f\x00") => UnknownProperty(0x7F), MalformedPacket;
            "property identifier 0", V5, frame(0x30, b"\x00\x01t\x01\x00") => UnknownProperty(0), MalformedPacket;
            "Receive Maximum in PUBLISH", V5, frame(0x30, b"\x00\x01t\x03\x21\x00\x01") => PropertyNotAllowed { property: PropertyId::ReceiveMaximum, packet: PacketType::Publish }, MalformedPacket;
            "Session Expiry in will properties", V5, connect(b"MQTT", 5, 0x06, b"\x00\x01c\x05\x11\x00\x00\x00\x01\x00\x01w\x00\x00",) => PropertyNotAllowed { property: PropertyId::SessionExpiryInterval, packet: PacketType::Connect }, MalformedPacket;
            "duplicate property", V5, frame(0x30, b"\x00\x01t\x04\x01\x00\x01\x01") => DuplicateProperty(PropertyId::PayloadFormatIndicator), ProtocolError;
            "topic alias 0", V5, frame(0x30, b"\x00\x01t\x03\x23\x00\x00") => InvalidPropertyValue(PropertyId::TopicAlias), TopicAliasInvalid;
            "payload format indicator 2", V5, frame(0x30, b"\x00\x01t\x02\x01\x02") => InvalidPropertyValue(PropertyId::PayloadFormatIndicator), ProtocolError;
            "subscription identifier 0", V5, frame(0x82, b"\x00\x01\x02\x0b\x00\x00\x01a\x00") => InvalidPropertyValue(PropertyId::SubscriptionIdentifier), ProtocolError;
            "PUBREL with a PUBACK code", V5, frame(0x62, &[0, 1, 0x10]) => InvalidReasonCode { packet: PacketType::PubRel, code: 0x10 }, ProtocolError;
            "CONNACK code 0x03", V5, vec![0x20, 0x03, 0x00, 0x03, 0x00] => InvalidReasonCode { packet: PacketType::ConnAck, code: 0x03 }, ProtocolError;
            "3.1.1 CONNACK return code 6", V3_1_1, vec![0x20, 0x02, 0x00, 0x06] => InvalidReasonCode { packet: PacketType::ConnAck, code: 6 }, ProtocolError;
            "3.1.1 SUBACK return code 3", V3_1_1, frame(0x90, &[0, 1, 3]) => InvalidReasonCode { packet: PacketType::SubAck, code: 3 }, ProtocolError;
            "AUTH with granted QoS 1", V5, vec![0xF0, 0x01, 0x01] => InvalidReasonCode { packet: PacketType::Auth, code: 1 }, ProtocolError;
        };
        cases.push(Case {
            max: 10,
            ..case(
                "packet over the maximum",
                V5,
                vec![0x30, 0x09],
                PacketTooLarge { size: 11, max: 10 },
                ReasonCode::PacketTooLarge,
            )
        });
        cases
    }

    /// The variant's name; a new variant fails to compile here until it is
    /// added, and then fails `every_error_variant_has_a_case` until it has one.
    fn variant(error: &DecodeError) -> &'static str {
        match error {
            MalformedVariableInteger => "MalformedVariableInteger",
            ReservedPacketType(_) => "ReservedPacketType",
            InvalidFlags { .. } => "InvalidFlags",
            PacketTooLarge { .. } => "PacketTooLarge",
            Truncated => "Truncated",
            TrailingBytes(_) => "TrailingBytes",
            InvalidUtf8 => "InvalidUtf8",
            NullCharacter => "NullCharacter",
            InvalidQos(_) => "InvalidQos",
            DupWithQos0 => "DupWithQos0",
            ZeroPacketId => "ZeroPacketId",
            InvalidProtocolName => "InvalidProtocolName",
            UnsupportedProtocolLevel(_) => "UnsupportedProtocolLevel",
            ConnectReservedFlag => "ConnectReservedFlag",
            InvalidWillFlags => "InvalidWillFlags",
            PasswordWithoutUsername(_) => "PasswordWithoutUsername",
            InvalidConnackFlags => "InvalidConnackFlags",
            SessionPresentOnRefusal => "SessionPresentOnRefusal",
            InvalidTopicName(_) => "InvalidTopicName",
            InvalidTopicFilter(_) => "InvalidTopicFilter",
            EmptyTopicWithoutAlias => "EmptyTopicWithoutAlias",
            NoTopicFilters(_) => "NoTopicFilters",
            NoReasonCodes(_) => "NoReasonCodes",
            ReservedSubscriptionOptionBits(_) => "ReservedSubscriptionOptionBits",
            InvalidRetainHandling => "InvalidRetainHandling",
            NoLocalOnSharedSubscription => "NoLocalOnSharedSubscription",
            UnknownProperty(_) => "UnknownProperty",
            PropertyNotAllowed { .. } => "PropertyNotAllowed",
            DuplicateProperty(_) => "DuplicateProperty",
            InvalidPropertyValue(_) => "InvalidPropertyValue",
            InvalidReasonCode { .. } => "InvalidReasonCode",
        }
    }

    const VARIANT_COUNT: usize = 31;

    #[test]
    fn each_malformed_input_gives_its_error_and_reason_code() {
        for case in cases() {
            let mut decoder = Decoder::new(case.version, case.max);
            let mut buf = BytesMut::from(&case.bytes[..]);
            assert_eq!(decoder.decode(&mut buf), Err(case.error), "{}", case.name);
            assert_eq!(case.error.reason_code(), case.reason, "{}", case.name);
        }
    }

    /// Fed a byte at a time, a malformed packet is "need more" until the
    /// decoder can tell, and then the same error: never another error, never
    /// a packet.
    #[test]
    fn malformed_inputs_give_the_same_verdict_byte_by_byte() {
        for case in cases() {
            for end in 0..case.bytes.len() {
                let mut decoder = Decoder::new(case.version, case.max);
                let mut buf = BytesMut::from(&case.bytes[..end]);
                let result = decoder.decode(&mut buf);
                assert!(
                    result == Ok(None) || result == Err(case.error),
                    "{} after {end} bytes: {result:?}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn every_error_variant_has_a_case() {
        let mut covered: Vec<_> = cases().iter().map(|case| variant(&case.error)).collect();
        covered.sort_unstable();
        covered.dedup();
        assert_eq!(covered.len(), VARIANT_COUNT, "covered: {covered:?}");
    }

    #[test]
    fn what_is_malformed_before_mqtt_5_is_valid_in_it() {
        // AUTH is packet type 15, and a password needs no user name.
        for bytes in [
            vec![0xF0, 0x00],
            connect(b"MQTT", 5, 0x42, b"\x00\x01c\x00\x02pw"),
        ] {
            let mut buf = BytesMut::from(&bytes[..]);
            let decoded = Decoder::new(V5, MAX_PACKET_SIZE).decode(&mut buf);
            assert!(matches!(decoded, Ok(Some(_))), "{decoded:?}");
        }
    }
}
