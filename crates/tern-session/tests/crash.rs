//! Crash test: a child process writes through the sled store with the
//! default durability and reports every write acknowledged as durable; the
//! parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that every acknowledged write is there, that nothing else is
//! (except the one write each client had in progress), and that the store
//! is consistent (`verify`: records decode, no orphans, the expiry index
//! agrees with the records). Repeated on the same directory, so each round
//! also recovers what the previous rounds' recoveries left.
//!
//! The child is this test binary run again with `TERN_CRASH_CHILD_DIR` set,
//! selecting only [`crash_child`]; without it, that test returns at once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tern_codec::{PacketId, Publish, QoS};
use tern_session::{
    InFlight, Message, Op, SessionExpiry, SessionRecord, SessionStore, SledConfig, SledStore,
    Timestamp,
};

const CHILD_DIR: &str = "TERN_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "TERN_CRASH_CHILD_ROUND";
const WRITERS: usize = 6;
const CLIENTS_PER_WRITER: usize = 2;
const ROUNDS: u64 = 40;
/// Each round's sequence numbers start here, so they only ever grow.
const SEQS_PER_ROUND: u64 = 1_000_000;
const DAY_MS: u64 = 86_400_000;

/// One client as the parent expects it, and as read back from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ClientState {
    session: Option<Option<u64>>,
    queue: BTreeSet<u64>,
    in_flight: BTreeSet<u16>,
}

/// An operation of the child, as printed: `S ms`, `E seq`, `D seq pid`,
/// `C pid` or `R`.
fn apply(state: &mut ClientState, op: &[&str]) {
    let number = |index: usize| -> u64 { op[index].parse().expect("a number") };
    match op[0] {
        "S" => state.session = Some(Some(number(1))),
        "E" => {
            state.queue.insert(number(1));
        }
        "D" => {
            state.queue.remove(&number(1));
            state.in_flight.insert(number(2) as u16);
        }
        "C" => {
            state.in_flight.remove(&(number(1) as u16));
        }
        "R" => *state = ClientState::default(),
        other => panic!("unknown operation {other}"),
    }
}

fn client_names() -> Vec<String> {
    (0..WRITERS * CLIENTS_PER_WRITER)
        .map(|index| format!("client-{index}"))
        .collect()
}

fn read_state(store: &SledStore, client: &str) -> ClientState {
    let Some(stored) = store.load_session(client).expect("load") else {
        return ClientState::default();
    };
    for queued in &stored.queue {
        let payload = &queued.message.publish().payload;
        assert_eq!(
            payload.as_ref(),
            payload_of(client, queued.seq).as_bytes(),
            "payload"
        );
    }
    ClientState {
        session: Some(stored.record.disconnected_at.map(Timestamp::as_millis)),
        queue: stored.queue.iter().map(|queued| queued.seq).collect(),
        in_flight: stored.in_flight.iter().map(|(id, _)| id.get()).collect(),
    }
}

/// 64 bytes naming the client and sequence number.
fn payload_of(client: &str, seq: u64) -> String {
    format!("{client}/{seq:020}/")
        .chars()
        .cycle()
        .take(64)
        .collect()
}

fn config() -> SledConfig {
    SledConfig {
        cache_capacity: 8 * 1024 * 1024,
        ..SledConfig::default()
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let started = Instant::now();
    let mut rng = Rng(started.elapsed().as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15);
    let mut model: BTreeMap<String, ClientState> = client_names()
        .into_iter()
        .map(|name| (name, ClientState::default()))
        .collect();
    let mut acknowledged = 0;
    let mut rounds = 0;
    let mut pending_seen = 0;
    while rounds < ROUNDS && started.elapsed() < Duration::from_secs(40) {
        rounds += 1;
        let lines = run_child_and_kill(&data, rounds, Duration::from_millis(20 + rng.below(180)));
        let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in &lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let client = fields[1].to_owned();
            match fields[0] {
                "P" => {
                    pending.insert(client, fields[2..].iter().map(|s| s.to_string()).collect());
                }
                "A" => {
                    let op = pending
                        .remove(&client)
                        .expect("an acknowledged op was announced");
                    let ops: Vec<&str> = op.iter().map(String::as_str).collect();
                    apply(model.get_mut(&client).expect("known client"), &ops);
                    acknowledged += 1;
                }
                other => panic!("unexpected line {other:?}"),
            }
        }

        let store = SledStore::open(&data, config()).expect("reopen after SIGKILL");
        if let Err(error) = store.verify() {
            panic!("round {rounds}: inconsistent after SIGKILL: {error}");
        }
        for (client, expected) in &mut model {
            let actual = read_state(&store, client);
            let mut with_pending = expected.clone();
            if let Some(op) = pending.get(client) {
                let ops: Vec<&str> = op.iter().map(String::as_str).collect();
                apply(&mut with_pending, &ops);
            }
            if actual != *expected {
                assert_eq!(
                    actual, with_pending,
                    "round {rounds}, {client}: neither the acknowledged state nor it plus the \
                     write in progress"
                );
                pending_seen += 1;
            }
            *expected = actual;
        }
        store.close().expect("close");
    }
    eprintln!(
        "crash test: {rounds} rounds, {acknowledged} acknowledged writes checked, \
         {pending_seen} unacknowledged writes found applied, {:?}",
        started.elapsed()
    );
    assert!(rounds >= 30, "only {rounds} rounds ran");
    assert!(
        acknowledged >= 100,
        "only {acknowledged} writes were acknowledged"
    );
}

/// Starts the child, waits for it to be ready, lets it write for `delay`,
/// kills it with SIGKILL and returns its complete output lines.
fn run_child_and_kill(data: &Path, round: u64, delay: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, data)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let collected = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test crash_child ... " before it.
            if line.ends_with("READY") {
                let _ = ready_sender.send(());
            } else if line.starts_with("P ") || line.starts_with("A ") {
                collected.lock().expect("lines").push(line);
            }
        }
    });
    if ready.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        panic!("round {round}: the child did not open the store within 20 s");
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("reader thread");
    // A line cut by the kill has no newline; `lines()` still yields it, so
    // drop anything malformed.
    let lines = lines.lock().expect("lines").clone();
    lines.into_iter().filter(|line| well_formed(line)).collect()
}

fn well_formed(line: &str) -> bool {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["A", client] => client.starts_with("client-"),
        ["P", _, "S" | "E" | "C", number] => number.parse::<u64>().is_ok(),
        ["P", _, "D", seq, pid] => seq.parse::<u64>().is_ok() && pid.parse::<u16>().is_ok(),
        ["P", _, "R"] => true,
        _ => false,
    }
}

/// The child: writes until killed. Each writer thread owns its clients and
/// waits for each write before the next, printing `P client op` before
/// submitting and `A client` once the write is durable.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let store = SledStore::open(dir, config()).expect("child opens the store");
    let names = client_names();
    let states: Vec<ClientState> = names.iter().map(|name| read_state(&store, name)).collect();
    print_line("READY");
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let store = &store;
            let range = writer * CLIENTS_PER_WRITER..(writer + 1) * CLIENTS_PER_WRITER;
            let mut clients: Vec<(String, ClientState)> = range
                .map(|index| (names[index].clone(), states[index].clone()))
                .collect();
            scope.spawn(move || {
                let mut rng = Rng(round * 7919 + writer as u64 + 1);
                let mut next_seq = round * SEQS_PER_ROUND;
                loop {
                    let index = rng.below(clients.len() as u64) as usize;
                    let (client, state) = &mut clients[index];
                    let (op, text) = next_op(client, state, &mut rng, &mut next_seq);
                    print_line(&format!("P {client} {text}"));
                    store.write(op).wait().expect("a durable write");
                    print_line(&format!("A {client}"));
                    let fields: Vec<&str> = text.split(' ').collect();
                    apply(state, &fields);
                }
            });
        }
    });
}

fn next_op(
    client: &str,
    state: &ClientState,
    rng: &mut Rng,
    next_seq: &mut u64,
) -> (Vec<Op>, String) {
    let client_id = || client.into();
    let now = SystemTime::now();
    let now_ms = Timestamp::from_system_time(now).as_millis();
    let put_session = || {
        let record = SessionRecord {
            client_id: client.into(),
            expiry: SessionExpiry::After(86_400),
            disconnected_at: Some(Timestamp::from_millis(now_ms)),
            subscriptions: BTreeMap::new(),
            will: None,
        };
        (
            vec![Op::PutSession(Box::new(record))],
            format!("S {now_ms}"),
        )
    };
    if state.session.is_none() {
        return put_session();
    }
    let roll = rng.below(100);
    if roll < 20 && !state.queue.is_empty() {
        let seq = *state.queue.first().expect("non-empty");
        let packet_id = (1..=u16::MAX)
            .find(|id| !state.in_flight.contains(id))
            .and_then(PacketId::new)
            .expect("a free packet id");
        let ops = vec![
            Op::Dequeue {
                client_id: client_id(),
                seq,
            },
            Op::PutInFlight {
                client_id: client_id(),
                packet_id,
                entry: InFlight::AwaitingPubAck(message(client, seq, now_ms)),
            },
        ];
        return (ops, format!("D {seq} {packet_id}"));
    }
    if roll < 35 && !state.in_flight.is_empty() {
        let pid = *state.in_flight.first().expect("non-empty");
        let packet_id = PacketId::new(pid).expect("stored ids are non-zero");
        return (
            vec![Op::RemoveInFlight {
                client_id: client_id(),
                packet_id,
            }],
            format!("C {pid}"),
        );
    }
    if roll < 40 {
        return put_session();
    }
    if roll < 42 {
        return (vec![Op::RemoveSession(client_id())], "R".into());
    }
    let seq = *next_seq;
    *next_seq += 1;
    let op = Op::Enqueue {
        client_id: client_id(),
        seq,
        message: message(client, seq, now_ms),
    };
    (vec![op], format!("E {seq}"))
}

/// A QoS 1 message with a 64-byte payload; every other one expires in a day
/// (so the expiry index is exercised).
fn message(client: &str, seq: u64, now_ms: u64) -> Message {
    let mut publish = Publish::new(format!("crash/{client}"), payload_of(client, seq));
    publish.qos = QoS::AtLeastOnce;
    let expires_at = (seq % 2 == 1).then(|| Timestamp::from_millis(now_ms + DAY_MS));
    Message::with_expiry(publish, expires_at)
}

fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // The parent may be gone; the next write fails the same way.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// xorshift64*: enough randomness for kill times and operation mixes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}
