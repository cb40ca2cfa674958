//! A data directory that cannot be used gives a clear, typed error, never a
//! panic: damaged files, a directory another process holds, a path that
//! cannot be written (in ways that fail even for root), and a store of an
//! unknown schema version.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tern_codec::{Publish, QoS};
use tern_session::{
    Message, Op, SCHEMA_VERSION, Session, SessionExpiry, SessionLimits, SessionStore, SledConfig,
    SledStore, StoreError,
};

const HOLDER_DIR: &str = "TERN_LOCK_HOLDER_DIR";

fn open(path: &Path) -> Result<SledStore, StoreError> {
    SledStore::open(path, SledConfig::default())
}

/// A store with one session and one queued message, closed.
fn populated(dir: &Path) -> PathBuf {
    let path = dir.join("data");
    let store = open(&path).expect("open a new store");
    let mut session = Session::new("c".into(), SessionExpiry::Never, SessionLimits::default());
    let mut publish = Publish::new("t", "payload");
    publish.qos = QoS::AtLeastOnce;
    session.enqueue(Message::with_expiry(publish, None));
    store.write(session.take_changes()).wait().expect("write");
    store.close().expect("close");
    path
}

fn expect_error(result: Result<SledStore, StoreError>) -> StoreError {
    match result {
        Ok(_) => panic!("the store opened"),
        Err(error) => error,
    }
}

/// Checks that the message names the path and says what to do.
fn assert_helpful(error: &StoreError, path: &Path, advice: &str) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "no path in: {message}"
    );
    assert!(message.contains(advice), "no {advice:?} in: {message}");
}

#[test]
fn garbage_in_sleds_config_file_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    std::fs::write(path.join("sled/conf"), [0xAB; 64]).expect("overwrite conf");
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert_helpful(&error, &path, "restore it from a backup");
}

#[test]
fn garbage_over_sleds_log_is_corruption_not_an_empty_store() {
    // sled opens a log overwritten from its start as an empty database,
    // silently; the marker file lets the store notice its records are gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    let log = path.join("sled/db");
    let len = std::fs::metadata(&log).expect("log exists").len() as usize;
    std::fs::write(&log, vec![0x5A; len]).expect("overwrite the log");
    for entry in std::fs::read_dir(path.join("sled")).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::write(entry.path(), [0xFF; 100]).expect("overwrite the snapshot");
        }
    }
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("no schema record"), "{error}");
}

#[test]
fn a_damaged_marker_file_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    std::fs::write(path.join("SCHEMA"), b"\x00\x01garbage").expect("overwrite marker");
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    assert_helpful(&error, &path, "move it aside");
}

#[test]
fn a_foreign_sled_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data");
    let db = sled::open(path.join("sled")).expect("a plain sled database");
    db.insert(b"someone else's key", b"value").expect("insert");
    db.flush().expect("flush");
    drop(db);
    let error = expect_error(open(&path));
    assert!(
        error.to_string().contains("not a Tern session store"),
        "{error}"
    );
}

#[test]
fn a_damaged_record_is_an_error_when_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    {
        let db = sled::open(path.join("sled")).expect("open sled directly");
        let key = db
            .scan_prefix(b"Q")
            .keys()
            .next()
            .expect("one queued message")
            .expect("readable");
        db.insert(key, &b"\x01\x07truncated"[..])
            .expect("damage the record");
        db.flush().expect("flush");
    }
    let store = open(&path).expect("the store opens: records are read lazily");
    let error = store
        .load_session("c")
        .expect_err("the queued message is damaged");
    assert!(
        matches!(error, StoreError::CorruptRecord { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("QoS"),
        "names what is wrong: {error}"
    );
    assert!(matches!(
        store.verify(),
        Err(StoreError::CorruptRecord { .. })
    ));
    // Writes over the damaged record fail cleanly too, and apply nothing.
    let result = store.write(vec![Op::RemoveSession("c".into())]).wait();
    assert!(
        matches!(result, Err(StoreError::CorruptRecord { .. })),
        "{result:?}"
    );
    assert_eq!(store.client_ids().expect("ids").len(), 1);
}

#[test]
fn an_unknown_schema_version_in_the_marker_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    std::fs::write(path.join("SCHEMA"), "tern-session store\nschema 99\n").expect("marker");
    let error = expect_error(open(&path));
    match &error {
        StoreError::UnknownSchemaVersion {
            found, expected, ..
        } => {
            assert_eq!((*found, *expected), (99, SCHEMA_VERSION));
        }
        other => panic!("expected UnknownSchemaVersion, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("version 99") && message.contains(&format!("version {SCHEMA_VERSION}"))
    );
    assert_helpful(&error, &path, "run the Tern release that wrote it");
}

#[test]
fn an_unknown_schema_version_in_the_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    {
        let db = sled::open(path.join("sled")).expect("open sled directly");
        db.insert(b"Mschema", &7u32.to_be_bytes()).expect("insert");
        db.flush().expect("flush");
    }
    let error = expect_error(open(&path));
    assert!(
        matches!(
            error,
            StoreError::UnknownSchemaVersion {
                found: 7,
                expected: SCHEMA_VERSION,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_path_under_a_regular_file_cannot_be_created_even_by_root() {
    // chmod does not stop root; a regular file where a directory should be
    // does (ENOTDIR), whoever runs the test.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write file");
    let path = file.join("data");
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert_helpful(&error, &path, "cannot create the data directory");

    let error = expect_error(open(&file));
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert_helpful(
        &error,
        &file,
        "is a directory this process can create and write",
    );
}

#[test]
fn a_path_on_a_read_only_file_system_is_refused() {
    // /proc refuses new directories to everyone, root included.
    let path = Path::new("/proc/tern-session-test/data");
    if !Path::new("/proc/self").exists() {
        return;
    }
    let error = expect_error(open(path));
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
}

#[test]
fn a_directory_held_by_another_process_is_locked() {
    if std::env::var_os(HOLDER_DIR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path());
    let mut holder = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "lock_holder", "--nocapture", "--test-threads=1"])
        .env(HOLDER_DIR, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the holder");
    let stdout = holder.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let held = lines.any(|line| line.is_ok_and(|line| line.ends_with("HOLDING")));
    assert!(held, "the holder process did not open the store");

    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    assert_helpful(&error, &path, "locked by another process");

    holder.kill().expect("kill the holder");
    holder.wait().expect("reap the holder");
    let store = open(&path).expect("the lock dies with its process");
    assert_eq!(store.client_ids().expect("ids").len(), 1);
}

/// The other process of the lock test: opens the store and keeps it open
/// until its standard input closes or it is killed.
#[test]
fn lock_holder() {
    let Some(path) = std::env::var_os(HOLDER_DIR) else {
        return;
    };
    let _store = open(Path::new(&path)).expect("the holder opens the store");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "HOLDING").expect("report");
    stdout.flush().expect("flush");
    drop(stdout);
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn random_damage_to_sleds_files_never_panics() {
    // Whatever sled makes of damaged files (it often recovers a prefix of
    // its log), opening and reading give a store or a typed error.
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = populated(dir.path());
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound.max(1)
    };
    let mut outcomes = [0usize; 2];
    for round in 0..24 {
        let path = dir.path().join(format!("damaged-{round}"));
        copy_dir(&pristine, &path);
        let sled_dir = path.join("sled");
        let files: Vec<PathBuf> = std::fs::read_dir(&sled_dir)
            .expect("list")
            .map(|entry| entry.expect("entry").path())
            .filter(|file| file.is_file())
            .collect();
        let file = &files[next(files.len() as u64) as usize];
        let mut bytes = std::fs::read(file).expect("read");
        for _ in 0..1 + next(8) {
            if !bytes.is_empty() {
                let at = next(bytes.len() as u64) as usize;
                let end = (at + 1 + next(64) as usize).min(bytes.len());
                bytes[at..end]
                    .iter_mut()
                    .for_each(|byte| *byte = next(256) as u8);
            }
        }
        std::fs::write(file, bytes).expect("damage");
        match open(&path) {
            Ok(store) => {
                let _ = store.verify();
                let _ = store.load_session("c");
                outcomes[0] += 1;
            }
            Err(_) => outcomes[1] += 1,
        }
    }
    eprintln!(
        "damaged stores: {} opened, {} refused",
        outcomes[0], outcomes[1]
    );
    assert_eq!(outcomes.iter().sum::<usize>(), 24, "{outcomes:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
