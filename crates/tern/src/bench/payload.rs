//! The bench payload: a fixed header that lets a subscriber tell who sent a
//! message, in what order, and when, followed by filler up to `--size`.
//!
//! Layout (big-endian), 28 bytes:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `TBv1` |
//! | 4..8 | run id (random per `tern bench` process) |
//! | 8..12 | publisher index within the run |
//! | 12..20 | sequence number, from 0 per publisher |
//! | 20..28 | send time, nanoseconds since the Unix epoch |
//!
//! The send time is the wall clock so that a `tern bench sub` in one process
//! can measure messages from a `tern bench pub` in another on the same
//! machine.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// The size of the header; smaller `--size` values are raised to it.
pub const HEADER_LEN: usize = 28;
const MAGIC: [u8; 4] = *b"TBv1";
/// Payloads are carved from one buffer of this size, so that a message
/// costs an allocation only once every few dozen messages.
const ARENA_CHUNK: usize = 64 * 1024;

/// What a subscriber learns from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The run the publisher belongs to.
    pub run: u32,
    /// The publisher's index in its run.
    pub publisher: u32,
    /// The publisher's sequence number of this message.
    pub seq: u64,
    /// When it was sent, in nanoseconds since the Unix epoch.
    pub sent_ns: u64,
}

impl Stamp {
    /// Reads the header of a payload; `None` if it is not a bench payload.
    pub fn parse(payload: &[u8]) -> Option<Stamp> {
        let header = payload.get(..HEADER_LEN)?;
        if header[..4] != MAGIC {
            return None;
        }
        let u32_at = |at: usize| header[at..at + 4].try_into().ok().map(u32::from_be_bytes);
        let u64_at = |at: usize| header[at..at + 8].try_into().ok().map(u64::from_be_bytes);
        Some(Stamp {
            run: u32_at(4)?,
            publisher: u32_at(8)?,
            seq: u64_at(12)?,
            sent_ns: u64_at(20)?,
        })
    }
}

/// The current wall-clock time in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Builds the payloads of one publisher, carving them out of a shared
/// buffer.
#[derive(Debug)]
pub struct PayloadWriter {
    run: u32,
    publisher: u32,
    size: usize,
    next_seq: u64,
    arena: BytesMut,
}

impl PayloadWriter {
    /// A writer for publisher `publisher` of run `run`, making payloads of
    /// `size` bytes (at least [`HEADER_LEN`]).
    pub fn new(run: u32, publisher: u32, size: usize) -> Self {
        Self {
            run,
            publisher,
            size: size.max(HEADER_LEN),
            next_seq: 0,
            arena: BytesMut::new(),
        }
    }

    /// The next payload, stamped with `sent_ns`.
    pub fn next(&mut self, sent_ns: u64) -> Bytes {
        if self.arena.capacity() < self.size {
            self.arena.reserve(ARENA_CHUNK.max(self.size));
        }
        self.arena.put_slice(&MAGIC);
        self.arena.put_u32(self.run);
        self.arena.put_u32(self.publisher);
        self.arena.put_u64(self.next_seq);
        self.arena.put_u64(sent_ns);
        self.arena.put_bytes(b'.', self.size - HEADER_LEN);
        self.next_seq += 1;
        self.arena.split().freeze()
    }

    /// How many payloads were made.
    pub fn count(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_its_stamp_and_has_the_requested_size() {
        let mut writer = PayloadWriter::new(7, 3, 100);
        let first = writer.next(1_000);
        let second = writer.next(2_000);
        assert_eq!(first.len(), 100);
        assert_eq!(
            Stamp::parse(&second),
            Some(Stamp {
                run: 7,
                publisher: 3,
                seq: 1,
                sent_ns: 2_000
            })
        );
        assert_eq!(Stamp::parse(&first).map(|stamp| stamp.seq), Some(0));
        assert_eq!(writer.count(), 2);
    }

    #[test]
    fn small_sizes_are_raised_to_the_header() {
        let mut writer = PayloadWriter::new(1, 0, 4);
        assert_eq!(writer.next(0).len(), HEADER_LEN);
    }

    #[test]
    fn foreign_payloads_are_not_stamps() {
        assert_eq!(Stamp::parse(b"hello"), None);
        assert_eq!(Stamp::parse(&[0; HEADER_LEN]), None);
    }
}
