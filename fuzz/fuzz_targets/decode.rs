//! Feeds arbitrary bytes to a `Decoder` of each protocol version with a
//! 64 KiB packet limit, as a stream, and checks every packet it yields:
//! it fits the limit, it encodes again to `encoded_len` bytes, those are
//! the bytes it was decoded from, and they decode back to the same value.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_codec::{Decoder, MAX_PACKET_SIZE, ProtocolVersion};

/// The packet size limit of the fuzzed decoders.
const LIMIT: u32 = 64 * 1024;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fuzz_target!(|data: &[u8]| {
    for version in VERSIONS {
        let mut decoder = Decoder::new(version, LIMIT);
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            // A CONNECT switches the decoder's version: re-decode in the
            // version the packet was decoded in.
            let decoded_in = decoder.version();
            let packet = match decoder.decode(&mut buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    assert_eq!(buf.len(), before, "\"need more\" consumed bytes");
                    break;
                }
                Err(error) => {
                    let _ = error.reason_code();
                    break;
                }
            };
            let consumed = before - buf.len();
            assert!(
                consumed >= 2 && consumed <= LIMIT as usize,
                "{consumed} bytes"
            );
            let start = data.len() - before;
            let original = &data[start..start + consumed];

            let mut wire = BytesMut::new();
            if let Err(error) = packet.encode(decoded_in, &mut wire) {
                panic!("{decoded_in}: decoded {packet:?} does not encode: {error}");
            }
            assert_eq!(packet.encoded_len(decoded_in), Ok(wire.len()));
            assert_eq!(
                &wire[..],
                original,
                "{decoded_in}: {packet:?} re-encodes to other bytes"
            );
            let again = Decoder::new(decoded_in, MAX_PACKET_SIZE).decode(&mut wire);
            assert_eq!(
                again,
                Ok(Some(packet)),
                "{decoded_in}: re-encoded packet differs"
            );
            assert!(wire.is_empty());
        }
    }
});
