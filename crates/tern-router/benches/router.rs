//! Benchmarks of the router: matches per second at 10k, 100k and 1M
//! subscriptions, subscribe and unsubscribe per second, matching on two
//! cores with and without a concurrent writer, and bytes per subscription.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-router cargo bench -p tern-router --bench router`.
//! Two reports go to stderr before the criterion runs (alone: pass `memory`
//! or `cpu` as the filter). The memory report counts live heap bytes with a
//! counting global allocator and compares them with
//! `SubscriptionTrie::heap_bytes`. The CPU report times matching and
//! subscribe/unsubscribe by the thread's on-CPU time, which stays
//! meaningful when other work shares the machine, as it does here.
//!
//! The subscription mix, per 100 subscribers (one subscription each):
//! 90 exact `devices/{id}/telemetry`, 9 `devices/{id}/+`, and one
//! `devices/+/status` per 10,000; plus 10 `alerts/#` and 2 `#` whatever the
//! size. Published topics: 90% `devices/{id}/telemetry`, 9%
//! `devices/{id}/status`, 1% `alerts/{n}`, with random existing ids.

#![allow(unsafe_code)] // The counting allocator below, and nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use tern_codec::{QoS, SubscriptionOptions, TopicFilter};
use tern_router::{Matches, RetainedIndex, Router, RouterConfig, SubscriptionTrie};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the same arguments, so the
// `GlobalAlloc` contract is `System`'s; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `System` via `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// A small deterministic generator (SplitMix64), so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn device(id: usize) -> String {
    format!("sensor-{id}")
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::new(text).expect("benchmark filters are valid")
}

const OPTIONS: SubscriptionOptions = SubscriptionOptions::with_qos(QoS::AtLeastOnce);

/// The filter of subscriber `index` in the realistic mix.
fn mixed_filter(index: usize) -> TopicFilter {
    if index % 10_000 == 9_999 {
        filter("devices/+/status")
    } else if index % 100 >= 90 {
        filter(&format!("devices/{}/+", device(index)))
    } else {
        filter(&format!("devices/{}/telemetry", device(index)))
    }
}

fn build_mixed(size: usize) -> SubscriptionTrie<u64> {
    let mut trie = SubscriptionTrie::new(RouterConfig::default());
    for index in 0..size {
        trie.subscribe(index as u64, &mixed_filter(index), OPTIONS, None);
    }
    let extra = size as u64;
    for n in 0..10 {
        trie.subscribe(extra + n, &filter("alerts/#"), OPTIONS, None);
    }
    trie.subscribe(extra + 10, &filter("#"), OPTIONS, None);
    trie.subscribe(extra + 11, &filter("#"), OPTIONS, None);
    trie
}

/// 4,096 published topics following the mix.
fn topics(size: usize) -> Vec<String> {
    let mut random = Lcg(42);
    (0..4096)
        .map(|_| {
            let id = device(random.below(size));
            match random.below(100) {
                0..90 => format!("devices/{id}/telemetry"),
                90..99 => format!("devices/{id}/status"),
                _ => format!("alerts/{}", random.below(50)),
            }
        })
        .collect()
}

const SIZES: [(usize, &str); 3] = [(10_000, "10k"), (100_000, "100k"), (1_000_000, "1M")];

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    for (size, label) in SIZES {
        if size >= 1_000_000 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(4));
        } else {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(2));
        }
        let trie = build_mixed(size);
        let topics = topics(size);
        let mut matches = Matches::new();
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                next = (next + 1) % topics.len();
                trie.matches(&topics[next], Some(7), &mut matches);
                black_box(matches.len())
            })
        });
    }
    group.finish();
}

fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("churn_1M");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let mut trie = build_mixed(1_000_000);
    let filters: Vec<TopicFilter> = (0..4096)
        .map(|n| filter(&format!("devices/{}/telemetry", device(2_000_000 + n))))
        .collect();
    let mut next = 0;
    group.throughput(Throughput::Elements(2));
    group.bench_function("subscribe_then_unsubscribe", |b| {
        b.iter(|| {
            next = (next + 1) % filters.len();
            let subscriber = 5_000_000 + next as u64;
            trie.subscribe(subscriber, &filters[next], OPTIONS, None);
            black_box(trie.unsubscribe(subscriber, &filters[next]))
        })
    });
    group.throughput(Throughput::Elements(1));
    let existing = mixed_filter(123);
    group.bench_function("resubscribe_existing", |b| {
        b.iter(|| black_box(trie.subscribe(123, &existing, OPTIONS, None)))
    });
    group.finish();
}

/// Matching on both cores through [`Router`], alone and with a writer that
/// subscribes and unsubscribes about every 50 µs.
fn concurrent(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_1M_two_threads");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    let router = Router::new(RouterConfig::default());
    *router.write() = build_mixed(1_000_000);
    let topics = topics(1_000_000);
    for writer in [false, true] {
        let label = if writer {
            "with_writer"
        } else {
            "readers_only"
        };
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                let stop = AtomicBool::new(false);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    if writer {
                        scope.spawn(|| {
                            let churn = filter("devices/churn/telemetry");
                            while !stop.load(Ordering::Relaxed) {
                                router.subscribe(9_999_999, &churn, OPTIONS, None);
                                router.unsubscribe(9_999_999, &churn);
                                std::thread::sleep(Duration::from_micros(50));
                            }
                        });
                    }
                    let readers: Vec<_> = (0..2u64)
                        .map(|reader| {
                            let (router, topics) = (&router, &topics);
                            scope.spawn(move || {
                                let mut matches = Matches::new();
                                let offset = reader as usize * 1000;
                                for n in 0..iterations.div_ceil(2) as usize {
                                    let topic = &topics[(offset + n) % topics.len()];
                                    router.matches(topic, None, &mut matches);
                                    black_box(matches.len());
                                }
                            })
                        })
                        .collect();
                    for reader in readers {
                        reader.join().expect("reader thread");
                    }
                    stop.store(true, Ordering::Relaxed);
                });
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// Live heap bytes added by `build`, and what `build` returned.
fn measure<T>(build: impl FnOnce() -> T) -> (usize, T, Duration) {
    let before = live_bytes();
    let started = Instant::now();
    let value = build();
    let elapsed = started.elapsed();
    (live_bytes() - before, value, elapsed)
}

fn exact_trie(size: usize, id: impl Fn(usize) -> String) -> SubscriptionTrie<u64> {
    let filters: Vec<TopicFilter> = (0..size)
        .map(|index| filter(&format!("devices/{}/telemetry", id(index))))
        .collect();
    let mut trie = SubscriptionTrie::new(RouterConfig::default());
    for (index, filter) in filters.iter().enumerate() {
        trie.subscribe(index as u64, filter, OPTIONS, None);
    }
    trie
}

/// Prints bytes per subscription for a few shapes of 1M subscriptions.
fn memory_report() {
    const SIZE: usize = 1_000_000;
    eprintln!("memory, {SIZE} subscriptions (live heap bytes / subscriptions):");
    let report = |name: &str, bytes: usize, estimate: usize, elapsed: Duration| {
        eprintln!(
            "  {name:<44} {:>6.1} B/sub (heap_bytes estimate {:>6.1}), built at {:.2} M subscribes/s",
            bytes as f64 / SIZE as f64,
            estimate as f64 / SIZE as f64,
            SIZE as f64 / elapsed.as_secs_f64() / 1e6,
        );
    };
    // Filters are built outside `measure`: the broker's come from the codec.
    let filters: Vec<TopicFilter> = (0..SIZE)
        .map(|index| filter(&format!("devices/{}/telemetry", device(index))))
        .collect();
    let (bytes, trie, elapsed) = measure(|| {
        let mut trie = SubscriptionTrie::new(RouterConfig::default());
        for (index, filter) in filters.iter().enumerate() {
            trie.subscribe(index as u64, filter, OPTIONS, None);
        }
        trie
    });
    report(
        "exact, devices/sensor-{n}/telemetry",
        bytes,
        trie.heap_bytes(),
        elapsed,
    );
    drop((trie, filters));

    let (bytes, trie, elapsed) = measure(|| exact_trie(SIZE, |index| format!("{:036x}", index)));
    report(
        "exact, 36-byte ids (not inline)",
        bytes,
        trie.heap_bytes(),
        elapsed,
    );
    drop(trie);

    let (bytes, trie, elapsed) = measure(|| build_mixed(SIZE));
    report(
        "realistic mix (see bench docs)",
        bytes,
        trie.heap_bytes(),
        elapsed,
    );
    drop(trie);

    let (bytes, index, elapsed) = measure(|| {
        let mut index = RetainedIndex::new();
        for n in 0..SIZE {
            index.insert(&format!("devices/{}/status", device(n)), n as u64);
        }
        index
    });
    eprintln!(
        "  {:<44} {:>6.1} B/topic (heap_bytes estimate {:>6.1}), built at {:.2} M inserts/s",
        "retained index, u64 values",
        bytes as f64 / SIZE as f64,
        index.heap_bytes() as f64 / SIZE as f64,
        SIZE as f64 / elapsed.as_secs_f64() / 1e6,
    );
}

/// Nanoseconds this thread has spent on a CPU, from the scheduler's own
/// accounting: unlike wall time, it does not grow while other processes on
/// this shared 2-core machine hold the CPU. `None` off Linux.
fn thread_cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Matches per second of one thread by CPU time and by wall time, and
/// subscribe + unsubscribe pairs likewise, for each size of the mix.
fn cpu_time_report() {
    const MATCHES: usize = 400_000;
    const PAIRS: usize = 200_000;
    eprintln!("one thread, on-CPU time (wall time in brackets):");
    for (size, label) in SIZES {
        let mut trie = build_mixed(size);
        let topics = topics(size);
        let mut matches = Matches::new();
        let mut recipients = 0;
        for topic in &topics {
            trie.matches(topic, Some(7), &mut matches);
        }
        let (cpu, wall) = (thread_cpu_nanos(), Instant::now());
        for n in 0..MATCHES {
            trie.matches(&topics[n % topics.len()], Some(7), &mut matches);
            recipients += matches.len();
        }
        let match_wall = wall.elapsed().as_nanos() as f64 / MATCHES as f64;
        let match_cpu = cpu
            .zip(thread_cpu_nanos())
            .map(|(start, end)| (end - start) as f64 / MATCHES as f64);

        let filters: Vec<TopicFilter> = (0..4096)
            .map(|n| filter(&format!("devices/{}/telemetry", device(2_000_000 + n))))
            .collect();
        let (cpu, wall) = (thread_cpu_nanos(), Instant::now());
        for n in 0..PAIRS {
            let subscriber = 5_000_000 + (n % filters.len()) as u64;
            trie.subscribe(subscriber, &filters[n % filters.len()], OPTIONS, None);
            trie.unsubscribe(subscriber, &filters[n % filters.len()]);
        }
        let pair_wall = wall.elapsed().as_nanos() as f64 / PAIRS as f64;
        let pair_cpu = cpu
            .zip(thread_cpu_nanos())
            .map(|(start, end)| (end - start) as f64 / PAIRS as f64);
        let per_second = |nanos: f64| 1e3 / nanos;
        eprintln!(
            "  {label:>4}: match {:>6.0} ns = {:>5.2} M/s [{:>5.2} M/s], {:.1} recipients/match; \
             subscribe+unsubscribe {:>6.0} ns = {:>5.2} M pairs/s [{:>5.2}]",
            match_cpu.unwrap_or(f64::NAN),
            match_cpu.map_or(f64::NAN, per_second),
            per_second(match_wall),
            recipients as f64 / MATCHES as f64,
            pair_cpu.unwrap_or(f64::NAN),
            pair_cpu.map_or(f64::NAN, per_second),
            per_second(pair_wall),
        );
    }
}

/// On-CPU and wall nanoseconds of `work` on this thread.
fn timed(work: impl FnOnce()) -> (Option<u64>, u64) {
    let (cpu, wall) = (thread_cpu_nanos(), Instant::now());
    work();
    let wall = wall.elapsed().as_nanos() as u64;
    (
        cpu.zip(thread_cpu_nanos()).map(|(start, end)| end - start),
        wall,
    )
}

/// Matching through [`Router`] at 1M: one reader, two readers at once, and
/// two readers with a writer doing a subscribe + unsubscribe every ~50 µs.
/// Per-thread CPU time shows what the shared lock costs each match.
fn router_cpu_report() {
    const MATCHES: usize = 400_000;
    let router = Router::new(RouterConfig::default());
    *router.write() = build_mixed(1_000_000);
    let topics = topics(1_000_000);
    let reader = |offset: usize| {
        let mut matches = Matches::new();
        timed(|| {
            for n in 0..MATCHES {
                router.matches(&topics[(offset + n) % topics.len()], None, &mut matches);
                black_box(matches.len());
            }
        })
    };
    reader(0);
    eprintln!("Router at 1M, per reader thread, on-CPU ns per match [wall]:");
    for (readers, writer) in [(1, false), (2, false), (2, true)] {
        let stop = AtomicBool::new(false);
        let mut writes = 0;
        let results: Vec<(Option<u64>, u64)> = std::thread::scope(|scope| {
            let writer = writer.then(|| {
                scope.spawn(|| {
                    let churn = filter("devices/churn/telemetry");
                    let mut writes = 0;
                    while !stop.load(Ordering::Relaxed) {
                        router.subscribe(9_999_999, &churn, OPTIONS, None);
                        router.unsubscribe(9_999_999, &churn);
                        writes += 1;
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    writes
                })
            });
            let handles: Vec<_> = (0..readers)
                .map(|index| {
                    let reader = &reader;
                    scope.spawn(move || reader(index * 1000))
                })
                .collect();
            let results = handles
                .into_iter()
                .map(|handle| handle.join().expect("reader thread"))
                .collect();
            stop.store(true, Ordering::Relaxed);
            if let Some(writer) = writer {
                writes = writer.join().expect("writer thread");
            }
            results
        });
        let per_match: Vec<String> = results
            .iter()
            .map(|(cpu, wall)| {
                format!(
                    "{:.0} [{:.0}]",
                    cpu.map_or(f64::NAN, |cpu| cpu as f64 / MATCHES as f64),
                    *wall as f64 / MATCHES as f64
                )
            })
            .collect();
        eprintln!(
            "  {readers} reader(s){}: {}",
            if writer {
                format!(" + writer ({writes} subscribe/unsubscribe pairs)")
            } else {
                String::new()
            },
            per_match.join(", ")
        );
    }
}

criterion_group!(benches, matching, churn, concurrent);

fn main() {
    let filtered = std::env::args().skip(1).any(|arg| !arg.starts_with('-'));
    if !filtered || std::env::args().any(|arg| arg == "memory") {
        memory_report();
    }
    if !filtered || std::env::args().any(|arg| arg == "cpu") {
        cpu_time_report();
        router_cpu_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
