//! Opening a data directory: checks that turn every bad directory into a
//! clear error, the schema version, and the start of the committer.

use std::any::Any;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backlog::Backlog;
use super::committer::{Committer, Counters};
use super::flusher::Flusher;
use super::{SCHEMA_VERSION, SledConfig, SledStore, keys};
use crate::StoreError;

/// The marker file naming the schema version, readable without sled.
pub(super) const MARKER: &str = "SCHEMA";
/// The subdirectory holding sled's files.
pub(super) const SLED_DIR: &str = "sled";

pub(super) fn open(path: &Path, config: SledConfig) -> Result<SledStore, StoreError> {
    fs::create_dir_all(path)
        .map_err(|error| StoreError::io("create the data directory", path, error))?;
    let marker = read_marker(path)?;
    if let Some(found) = marker
        && found != SCHEMA_VERSION
    {
        return Err(unknown_version(path, found));
    }
    let db = open_sled(path, config)?;
    check_schema(path, &db, marker.is_some())?;
    if marker.is_none() {
        write_marker(path)?;
    }

    let depth = config.queue_depth.max(1);
    let dirty = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Counters::default());
    let (to_flusher, waiting) = mpsc::sync_channel(depth);
    let flusher = Flusher {
        db: db.clone(),
        path: path.to_path_buf(),
        durability: config.durability,
        waiting,
        dirty: Arc::clone(&dirty),
        background_error: None,
        stats: Arc::clone(&stats),
    };
    let flusher_thread = spawn("tern-session-flush", path, move || flusher.run())?;
    // Unbounded: submitting never blocks; `Backlog` is the bound.
    let (jobs, receiver) = mpsc::channel();
    let backlog = Arc::new(Backlog::new(depth));
    let committer = Committer {
        db: db.clone(),
        path: path.to_path_buf(),
        durability: config.durability,
        jobs: receiver,
        max_group_jobs: config.max_group_jobs.max(1),
        dirty,
        flusher: Some(to_flusher),
        flusher_thread: Some(flusher_thread),
        stats: Arc::clone(&stats),
        backlog: Arc::clone(&backlog),
    };
    // If this fails, dropping `committer` stops the flusher it owns.
    let handle = spawn("tern-session-commit", path, move || committer.run())?;
    Ok(SledStore {
        db,
        path: path.to_path_buf(),
        jobs: Some(jobs),
        committer: Some(handle),
        stats,
        backlog,
    })
}

fn spawn(
    name: &str,
    path: &Path,
    run: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
) -> Result<JoinHandle<Result<(), StoreError>>, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map_err(|error| StoreError::io("start a thread for", path, error))
}

fn unknown_version(path: &Path, found: u32) -> StoreError {
    StoreError::UnknownSchemaVersion {
        path: path.to_path_buf(),
        found,
        expected: SCHEMA_VERSION,
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// The schema version in the marker file; `None` if there is no marker.
fn read_marker(path: &Path) -> Result<Option<u32>, StoreError> {
    let marker = path.join(MARKER);
    let text = match fs::read_to_string(&marker) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::io("read", marker, error)),
    };
    text.lines()
        .find_map(|line| line.strip_prefix("schema "))
        .and_then(|version| version.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| corrupt(path, format!("{MARKER} has no line \"schema N\"")))
}

fn write_marker(path: &Path) -> Result<(), StoreError> {
    let temporary = path.join(format!("{MARKER}.tmp"));
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        writeln!(file, "tern-session store\nschema {SCHEMA_VERSION}")?;
        file.sync_all()?;
        fs::rename(&temporary, path.join(MARKER))?;
        fs::File::open(path)?.sync_all()
    };
    write().map_err(|error| StoreError::io("write the schema marker in", path, error))
}

/// How long opening waits for a lock that may be on its way out: sled's
/// background threads keep the files open for a moment after a store in
/// this process is closed, and a broker restarted by its supervisor may
/// start while the old process is still exiting.
const LOCK_WAIT: Duration = Duration::from_secs(2);
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// Opens sled's files, waiting up to [`LOCK_WAIT`] while they are locked.
fn open_sled(path: &Path, config: SledConfig) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match open_sled_once(path, config) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            opened => return opened,
        }
    }
}

fn open_sled_once(path: &Path, config: SledConfig) -> Result<sled::Db, StoreError> {
    let sled_config = sled::Config::new()
        .path(path.join(SLED_DIR))
        .cache_capacity(config.cache_capacity)
        // The committer decides when to flush.
        .flush_every_ms(None);
    // sled 0.34 panics on some damaged files instead of returning an error.
    // Nothing outlives a panic but the payload: the config is dropped.
    let open = std::panic::AssertUnwindSafe(move || sled_config.open());
    match std::panic::catch_unwind(open) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(open_error(path, error)),
        Err(panic) => Err(corrupt(
            path,
            format!("sled panicked while opening it: {}", panic_message(&*panic)),
        )),
    }
}

fn open_error(path: &Path, error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(error) if error.to_string().starts_with("could not acquire lock") => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Io(error) => StoreError::io("open the session store in", path, error),
        sled::Error::Unsupported(detail) | sled::Error::ReportableBug(detail) => {
            corrupt(path, format!("sled cannot open it: {detail}"))
        }
        sled::Error::Corruption { at, .. } => {
            corrupt(path, format!("sled found a damaged log entry at {at:?}"))
        }
        other => corrupt(path, format!("sled cannot open it: {other}")),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Checks the schema record, or writes it into a new store.
fn check_schema(path: &Path, db: &sled::Db, has_marker: bool) -> Result<(), StoreError> {
    let stored = db
        .get(keys::SCHEMA)
        .map_err(|error| open_error(path, error))?;
    match stored {
        Some(value) => {
            let bytes: [u8; 4] = value.as_ref().try_into().map_err(|_| {
                corrupt(
                    path,
                    format!("the schema record has {} bytes, not 4", value.len()),
                )
            })?;
            let found = u32::from_be_bytes(bytes);
            if found != SCHEMA_VERSION {
                return Err(unknown_version(path, found));
            }
            Ok(())
        }
        None if has_marker => Err(corrupt(
            path,
            format!(
                "{MARKER} says it holds a store, but sled's database under {SLED_DIR}/ has no \
                 schema record (its log was damaged or replaced)"
            ),
        )),
        None if !db.is_empty() => Err(corrupt(
            path,
            "sled's database holds records but no schema record: it is not a Tern session store",
        )),
        None => {
            db.insert(keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                .and_then(|_| db.flush())
                .map_err(|error| open_error(path, error))?;
            Ok(())
        }
    }
}
