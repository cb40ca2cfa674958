//! Support for the end-to-end tests: a Mosquitto broker per test on a free
//! 127.0.0.1 port, and subprocesses (`tern`, `mosquitto_pub`,
//! `mosquitto_sub`) that are always bounded by a timeout and killed when
//! dropped, so that a failing test still stops by itself and leaves no
//! process behind.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The `tern` binary under test.
pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// How long any one step may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

const INSTALL_HINT: &str = "run `apt-get install mosquitto mosquitto-clients` \
    (scripts/test installs them on CI)";

/// Finds a program in the usual places, or fails the test saying how to
/// install it.
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/sbin".into(),
        ])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed, and these tests need it: {INSTALL_HINT}")
        })
}

/// Splits a command line written as one string at whitespace.
pub fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// A `tern` command with `args`.
pub fn tern<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut command = Command::new(TERN);
    command.args(args);
    command
}

/// A `mosquitto_pub` or `mosquitto_sub` command with `args`.
pub fn mosquitto_client<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> Command {
    let mut command = Command::new(program(name));
    command.args(args);
    command
}

/// A Mosquitto broker, killed when dropped. Its log (every packet, on
/// standard error) goes to a file that tests read to know when a client
/// has subscribed.
pub struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// A broker that lets anyone in.
    pub fn start() -> Self {
        Self::with_config("allow_anonymous true\n")
    }

    /// A broker with these extra configuration lines.
    pub fn with_config(extra: &str) -> Self {
        let binary = program("mosquitto");
        let mut last_log = String::new();
        // Another test may take the free port first: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("cannot create a temporary directory");
            let port = free_port();
            let config = dir.path().join("mosquitto.conf");
            let log = dir.path().join("mosquitto.log");
            let text = format!("listener {port} 127.0.0.1\n{extra}log_dest stderr\nlog_type all\n");
            fs::write(&config, text).expect("cannot write the mosquitto configuration");
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("cannot create the mosquitto log"))
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
            let mut broker = Self {
                child,
                port,
                log,
                _dir: dir,
            };
            if broker.wait_until_listening() {
                return broker;
            }
            last_log = broker.log();
        }
        panic!("mosquitto would not start; its last log:\n{last_log}");
    }

    /// True once the port accepts connections; false if Mosquitto exited
    /// (its port was taken).
    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            sleep(Duration::from_millis(10));
        }
        panic!(
            "mosquitto did not listen within {PATIENCE:?}; its log:\n{}",
            self.log()
        );
    }

    /// The port, as a command-line argument.
    pub fn port(&self) -> String {
        self.port.to_string()
    }

    /// Everything the broker has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the broker has logged `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        self.wait_for_log_after(0, needle);
    }

    /// Waits until the broker has logged `needle` after the first `mark`
    /// bytes of its log.
    fn wait_for_log_after(&self, mark: usize, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self
                .log()
                .get(mark..)
                .is_some_and(|new| new.contains(needle))
            {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        panic!(
            "mosquitto never logged {needle:?}; its log:\n{}",
            self.log()
        );
    }

    /// Starts a subscriber (`tern sub` or `mosquitto_sub`) whose client
    /// identifier is `client_id`, and waits until the broker has sent it
    /// its SUBACK, so that what is published next reaches it.
    pub fn subscriber(&self, command: Command, client_id: &str) -> Running {
        let mark = self.log().len();
        let subscriber = Running::spawn(command);
        self.wait_for_log_after(mark, &format!("Sending SUBACK to {client_id}\n"));
        subscriber
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a free port");
    listener.local_addr().expect("no local address").port()
}

/// A subprocess running in the background, killed when dropped.
pub struct Running {
    child: Option<Child>,
    what: String,
}

impl Running {
    /// Starts `command` with its output captured.
    pub fn spawn(mut command: Command) -> Self {
        let what = format!("{command:?}");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {what}: {error}"));
        Self {
            child: Some(child),
            what,
        }
    }

    /// The process identifier, for sending signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the process at once (SIGKILL): it cannot say goodbye.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own, within [`PATIENCE`].
    pub fn wait(mut self) -> Output {
        let mut child = self.child.take().expect("already waited for");
        let deadline = Instant::now() + PATIENCE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    return child.wait_with_output().expect("cannot collect the output");
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let output = child.wait_with_output().expect("cannot collect the output");
                    panic!(
                        "{} did not finish within {PATIENCE:?}\nstdout: {}\nstderr: {}",
                        self.what,
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` to completion within [`PATIENCE`], feeding it `stdin`.
pub fn run_with_input(mut command: Command, stdin: &[u8]) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what}: {error}"));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .expect("cannot write to the child's stdin");
    }
    Running {
        child: Some(child),
        what,
    }
    .wait()
}

/// Runs `command` to completion within [`PATIENCE`].
pub fn run(command: Command) -> Output {
    Running::spawn(command).wait()
}

/// Asserts that a process succeeded, showing its output if not.
#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The standard output of a successful process, as text.
#[track_caller]
pub fn stdout_of(output: &Output) -> String {
    assert_success(output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The standard error of a failed process, as text.
#[track_caller]
pub fn failure_of(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got success\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The path of a file in a directory, for tests that write payload files.
pub fn file_in(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).expect("cannot write a test file");
    path
}

#[test]
#[should_panic(expected = "apt-get install mosquitto mosquitto-clients")]
fn a_missing_program_says_how_to_install_it() {
    program("mosquitto-that-is-not-installed");
}
