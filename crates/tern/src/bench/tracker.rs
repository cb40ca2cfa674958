//! What one subscriber saw: end-to-end latency in an HDR histogram, and for
//! each publisher's stream of sequence numbers, which arrived, how often
//! and in what order.
//!
//! A stream keeps a bitmap of the sequence numbers seen, so duplicates are
//! exact and losses are `sent - unique` once the publisher's final count is
//! known. Words below the lowest missing number are dropped as the stream
//! advances, so a stream with no loss holds a few words; a stream with a gap
//! holds one bit per message after the gap (125 KB per million messages).

use std::collections::HashMap;

use hdrhistogram::Histogram;

use super::payload::Stamp;

/// Latencies above this (one hour, in µs) are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The sequence numbers received from one publisher by one subscriber.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Bit `i` of word `w` is sequence number `(base_word + w) * 64 + i`.
    seen: std::collections::VecDeque<u64>,
    base_word: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Sequence numbers received more than once (each extra copy counts).
    pub duplicates: u64,
    /// Messages that arrived after a higher sequence number of the stream.
    pub out_of_order: u64,
    /// The highest sequence number received.
    pub highest: Option<u64>,
}

impl Stream {
    /// Records sequence number `seq`.
    pub fn record(&mut self, seq: u64) {
        let word = seq / 64;
        if word < self.base_word {
            // Below the all-received prefix: it has been seen already.
            self.duplicates += 1;
            return;
        }
        let index = usize::try_from(word - self.base_word).unwrap_or(usize::MAX);
        if index >= self.seen.len() {
            self.seen.resize(index + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.seen[index] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[index] |= bit;
        self.unique += 1;
        match self.highest {
            Some(highest) if seq < highest => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
        while self.seen.len() > 1 && self.seen.front() == Some(&u64::MAX) {
            self.seen.pop_front();
            self.base_word += 1;
        }
    }

    /// Messages missing below the highest one received (for streams whose
    /// publisher count is unknown).
    pub fn gaps(&self) -> u64 {
        self.highest.map_or(0, |highest| highest + 1 - self.unique)
    }
}

/// Everything one subscriber measured.
#[derive(Debug)]
pub struct Tracker {
    run: u32,
    /// Streams of this run's publishers, by publisher index.
    pub own: Vec<Stream>,
    /// Streams of other runs (`tern bench sub` listening to another process).
    pub foreign: HashMap<(u32, u32), Stream>,
    /// End-to-end latency in microseconds; made at the first message, so
    /// that idle connections (`conn`) do not hold a histogram (about 200 KB).
    pub latency: Option<Histogram<u64>>,
    /// Messages received, including duplicates and foreign payloads.
    pub received: u64,
    /// Messages whose payload carried no bench header.
    pub unstamped: u64,
}

impl Tracker {
    /// A tracker for a subscriber of run `run`, expecting `publishers`
    /// publishers of its own run.
    pub fn new(run: u32, publishers: usize) -> Self {
        Self {
            run,
            own: vec![Stream::default(); publishers],
            foreign: HashMap::new(),
            latency: None,
            received: 0,
            unstamped: 0,
        }
    }

    /// Records one message received at `now_ns`; returns the index of the
    /// publisher of this run that sent it, if it was one.
    pub fn record(&mut self, payload: &[u8], now_ns: u64) -> Option<u32> {
        self.received += 1;
        let Some(stamp) = Stamp::parse(payload) else {
            self.unstamped += 1;
            return None;
        };
        let micros = now_ns.saturating_sub(stamp.sent_ns) / 1_000;
        self.latency
            .get_or_insert_with(new_histogram)
            .saturating_record(micros.min(MAX_LATENCY_US));
        let own = usize::try_from(stamp.publisher)
            .ok()
            .filter(|_| stamp.run == self.run)
            .and_then(|index| self.own.get_mut(index));
        match own {
            Some(stream) => {
                stream.record(stamp.seq);
                Some(stamp.publisher)
            }
            None => {
                self.foreign
                    .entry((stamp.run, stamp.publisher))
                    .or_default()
                    .record(stamp.seq);
                None
            }
        }
    }
}

/// An empty latency histogram (µs, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        // The bounds above are valid constants; this branch is unreachable.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

#[cfg(test)]
mod tests {
    use super::super::payload::PayloadWriter;
    use super::*;

    #[test]
    fn in_order_streams_stay_small_and_count_each_message_once() {
        let mut stream = Stream::default();
        for seq in 0..10_000 {
            stream.record(seq);
        }
        assert_eq!(
            (stream.unique, stream.duplicates, stream.out_of_order),
            (10_000, 0, 0)
        );
        assert!(stream.seen.len() <= 2, "{}", stream.seen.len());
        assert_eq!(stream.gaps(), 0);
    }

    #[test]
    fn duplicates_reordering_and_gaps_are_counted() {
        let mut stream = Stream::default();
        for seq in [0, 1, 3, 2, 2, 0, 6, 200] {
            stream.record(seq);
        }
        assert_eq!(stream.unique, 6);
        assert_eq!(stream.duplicates, 2);
        assert_eq!(stream.out_of_order, 1);
        assert_eq!(stream.highest, Some(200));
        assert_eq!(stream.gaps(), 195);
    }

    #[test]
    fn the_tracker_sorts_messages_by_run_and_publisher() {
        let mut tracker = Tracker::new(9, 2);
        let mut mine = PayloadWriter::new(9, 1, 32);
        let mut theirs = PayloadWriter::new(8, 1, 32);
        assert_eq!(tracker.record(&mine.next(1_000_000), 3_000_000), Some(1));
        assert_eq!(tracker.record(&theirs.next(1_000_000), 3_000_000), None);
        assert_eq!(tracker.record(b"plain text", 3_000_000), None);
        assert_eq!(tracker.own[1].unique, 1);
        assert_eq!(tracker.foreign[&(8, 1)].unique, 1);
        assert_eq!((tracker.received, tracker.unstamped), (3, 1));
        let latency = tracker.latency.as_ref().unwrap();
        assert_eq!(latency.len(), 2);
        assert_eq!(latency.max(), latency.highest_equivalent(2_000));
    }
}
