//! The data types of MQTT's wire format: big-endian integers, variable byte
//! integers, length-prefixed UTF-8 strings and binary data.
//!
//! [`Reader`] consumes one packet's body, which the decoder has already cut
//! out of the stream as `Bytes`, so strings and payloads are slices of the
//! received buffer and never copies. Writers are infallible: every length is
//! checked while the packet's size is computed, before the first byte is
//! written.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::topic::{TopicError, validate_topic_name};

/// Largest value of a variable byte integer (four bytes).
pub const MAX_VARIABLE_INTEGER: u32 = 268_435_455;

/// Parses a variable byte integer at the start of `bytes`.
///
/// Returns `Ok(None)` when more bytes are needed, otherwise the value and the
/// number of bytes it used. A fifth byte or a non-minimal encoding is
/// malformed.
pub fn parse_variable_integer(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            // A last byte of zero after a first byte adds nothing: the value
            // fits in fewer bytes.
            if byte == 0 && index > 0 {
                return Err(DecodeError::MalformedVariableInteger);
            }
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::MalformedVariableInteger);
    }
    Ok(None)
}

/// Number of bytes `value` takes as a variable byte integer.
pub const fn variable_integer_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value`, which must be at most [`MAX_VARIABLE_INTEGER`].
pub fn put_variable_integer(dst: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= MAX_VARIABLE_INTEGER);
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Length of a string or binary field including its two-byte prefix, or an
/// error naming `field` if it is too long.
pub fn prefixed_len(len: usize, field: &'static str) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong(field));
    }
    Ok(2 + len)
}

/// Length of a UTF-8 string field including its prefix, checking what the
/// decoder checks: at most 65,535 bytes and no U+0000.
pub fn string_len(text: &str, field: &'static str) -> Result<usize, EncodeError> {
    if contains_byte(text.as_bytes(), [0]) {
        return Err(EncodeError::NullCharacter(field));
    }
    prefixed_len(text.len(), field)
}

/// Writes a two-byte length and the bytes; the length was checked by
/// [`prefixed_len`].
pub fn put_prefixed(dst: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    dst.put_u16(bytes.len() as u16);
    dst.put_slice(bytes);
}

/// True if `bytes` contains any of the `needles`.
///
/// Strings in MQTT are short (topics of 10 to 100 bytes), where `memchr`
/// pays a set-up cost per call; this checks eight bytes at a time with the
/// classic "has a zero byte" bit trick, which is exact as a yes/no answer.
pub fn contains_byte<const N: usize>(bytes: &[u8], needles: [u8; N]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word_has_needle = |word: [u8; 8]| {
        let word = u64::from_ne_bytes(word);
        let mut found = 0;
        for needle in needles {
            let masked = word ^ (LOW * u64::from(needle));
            found |= masked.wrapping_sub(LOW) & !masked & HIGH;
        }
        found != 0
    };
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        if word_has_needle(word) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|byte| needles.iter().any(|needle| needle == byte))
}

/// Consumes the body of one packet.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over one packet body.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, len: usize) -> Result<(), DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// A big-endian two-byte integer.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    /// A big-endian four-byte integer.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer.
    pub fn variable_integer(&mut self) -> Result<u32, DecodeError> {
        match parse_variable_integer(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// The next `len` bytes, shared with the receive buffer.
    pub fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    /// Everything not yet consumed.
    pub fn take_rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary data: a two-byte length and that many bytes.
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A topic name: a UTF-8 string checked by [`validate_topic_name`] in
    /// one scan (the U+0000 scan of [`Reader::string`] would be a second).
    /// An empty topic is returned as is; the caller decides whether it is
    /// allowed.
    pub fn topic_name(&mut self) -> Result<ByteString, DecodeError> {
        let topic = ByteString::try_from(self.binary()?).map_err(|_| DecodeError::InvalidUtf8)?;
        if !topic.is_empty() {
            validate_topic_name(&topic).map_err(|error| match error {
                TopicError::NullCharacter => DecodeError::NullCharacter,
                other => DecodeError::InvalidTopicName(other),
            })?;
        }
        Ok(topic)
    }

    /// True when the next byte is `byte`, which is then consumed.
    pub fn skip_if(&mut self, byte: u8) -> bool {
        let found = self.buf.first() == Some(&byte);
        if found {
            self.buf.advance(1);
        }
        found
    }

    /// A UTF-8 string: well-formed and free of U+0000.
    pub fn string(&mut self) -> Result<ByteString, DecodeError> {
        let bytes = self.binary()?;
        if contains_byte(&bytes, [0]) {
            return Err(DecodeError::NullCharacter);
        }
        ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_integers_at_the_boundaries() {
        for (value, encoded) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_VARIABLE_INTEGER, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            put_variable_integer(&mut buf, value);
            assert_eq!(&buf[..], encoded);
            assert_eq!(variable_integer_len(value), encoded.len());
            assert_eq!(
                parse_variable_integer(encoded),
                Ok(Some((value, encoded.len())))
            );
        }
    }

    #[test]
    fn incomplete_variable_integers_need_more() {
        assert_eq!(parse_variable_integer(&[]), Ok(None));
        assert_eq!(parse_variable_integer(&[0x80]), Ok(None));
        assert_eq!(parse_variable_integer(&[0x80, 0x80, 0x80]), Ok(None));
    }

    #[test]
    fn five_byte_and_non_minimal_integers_are_malformed() {
        assert_eq!(
            parse_variable_integer(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::MalformedVariableInteger)
        );
        assert_eq!(
            parse_variable_integer(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVariableInteger)
        );
        assert_eq!(
            parse_variable_integer(&[0x80, 0x00]),
            Err(DecodeError::MalformedVariableInteger)
        );
    }

    #[test]
    fn contains_byte_finds_every_needle_at_every_position() {
        for len in 0..40 {
            for position in 0..len {
                for needle in [0u8, b'+', b'#'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[position] = needle;
                    assert!(
                        contains_byte(&bytes, [0, b'+', b'#']),
                        "{len} {position} {needle}"
                    );
                }
            }
            // Bytes next to the needles' values never match.
            let near: Vec<u8> = (0..len)
                .map(|i| [1u8, 0x2A, 0x24, 0x80, 0xFF][i % 5])
                .collect();
            assert!(!contains_byte(&near, [0, b'+', b'#']), "{len}");
        }
    }

    #[test]
    fn strings_are_checked() {
        let mut reader = Reader::new(Bytes::from_static(b"\x00\x03a\x00b"));
        assert_eq!(reader.string(), Err(DecodeError::NullCharacter));
        // An encoded surrogate (U+D800) is not well-formed UTF-8.
        let mut reader = Reader::new(Bytes::from_static(b"\x00\x03\xED\xA0\x80"));
        assert_eq!(reader.string(), Err(DecodeError::InvalidUtf8));
        let mut reader = Reader::new(Bytes::from_static(b"\x00\x05ab"));
        assert_eq!(reader.string(), Err(DecodeError::Truncated));
        let mut reader = Reader::new(Bytes::from_static(b"\x00\x03h\xC3\xA9"));
        assert_eq!(reader.string().as_deref(), Ok("h\u{e9}"));
    }

    #[test]
    fn strings_share_the_receive_buffer() {
        let body = Bytes::from_static(b"\x00\x05hello");
        let mut reader = Reader::new(body.clone());
        let text = reader.string().unwrap();
        assert_eq!(text.as_bytes().as_ptr(), body[2..].as_ptr());
    }
}
