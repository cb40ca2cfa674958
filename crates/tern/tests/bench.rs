//! `tern bench` against real brokers: Tern itself (`tern serve --in-memory`)
//! and Debian's Mosquitto, to show that the bench measures any broker.
//! Each test runs `tern bench pairs` for about two seconds at QoS 1 in a
//! closed loop and checks the JSON result: messages flowed and none was
//! lost. Every process is bounded in time and killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const TERN: &str = env!("CARGO_BIN_EXE_tern");
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// The longest a broker may take to listen, or a bench to finish.
const PATIENCE: Duration = Duration::from_secs(30);

/// A child process, killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Starts a broker with `start(port)` and waits until it accepts connections.
///
/// The port is free when chosen but not reserved: a test running beside
/// this one may take it first, and then this broker exits (address in use)
/// while the other one answers the probe. So the broker must still be
/// running once the port answers; if it is not, another port is tried.
fn broker(start: impl Fn(u16) -> Command) -> (Guard, u16) {
    for _attempt in 0..5 {
        let port = free_port();
        let mut command = start(port);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let mut broker = Guard(command.spawn().expect("the broker starts"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            if broker.0.try_wait().expect("the broker's status").is_some() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                sleep(Duration::from_millis(100));
                if broker.0.try_wait().expect("the broker's status").is_none() {
                    return (broker, port);
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the broker never listened on {port}"
            );
            sleep(Duration::from_millis(50));
        }
    }
    panic!("the broker exited at start-up five times, each on a fresh port");
}

/// `tern serve` in memory on 127.0.0.1:`port`, with `extra` flags.
fn tern_serve(port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(TERN);
    command.args(["serve", "--in-memory", "--log", "warn", "--listen"]);
    command.arg(format!("127.0.0.1:{port}"));
    command.args(extra);
    command
}

/// Runs `tern bench pairs` at QoS 1 against `port`, with `extra` flags:
/// whether it succeeded, its standard output and its standard error.
fn run_pairs(port: u16, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["pairs", "-c", "4"];
    args.extend_from_slice(extra);
    run_bench(port, &args)
}

/// Runs `tern bench ARGS` at QoS 1 for two seconds in a closed loop of 50
/// against `port`: whether it succeeded, its standard output and its
/// standard error.
fn run_bench(port: u16, args: &[&str]) -> (bool, String, String) {
    let port = port.to_string();
    let common = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-q",
        "1",
        "-d",
        "2",
        "--inflight",
        "50",
        "--threads",
        "2",
        "--quiet",
        "--json",
    ];
    let child = Command::new(TERN)
        .arg("bench")
        .args(args)
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern bench starts");
    let mut bench = Guard(child);
    let deadline = Instant::now() + PATIENCE;
    while bench
        .0
        .try_wait()
        .expect("waiting for tern bench")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "tern bench did not finish in time"
        );
        sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut out) = bench.0.stdout.take() {
        out.read_to_string(&mut stdout).expect("bench output");
    }
    if let Some(mut err) = bench.0.stderr.take() {
        err.read_to_string(&mut stderr).expect("bench errors");
    }
    let status = bench.0.wait().expect("bench status");
    (status.success(), stdout, stderr)
}

/// Runs `tern bench pairs` at QoS 1 against `port` with `extra` flags and
/// returns its JSON; the run must succeed.
fn bench_pairs(port: u16, extra: &[&str]) -> serde_json::Value {
    let (succeeded, stdout, stderr) = run_pairs(port, extra);
    assert!(succeeded, "tern bench failed: {stderr}\n{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

fn check(result: &serde_json::Value) {
    assert_eq!(result["scenario"], "pairs");
    assert_eq!(result["lost"], 0, "{result:#}");
    assert_eq!(result["errors"], 0, "{result:#}");
    assert_eq!(result["connections"], 8, "{result:#}");
    assert!(
        result["sent_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{result:#}"
    );
    assert!(
        result["received_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{result:#}"
    );
    assert_eq!(result["received"], result["expected"], "{result:#}");
    assert!(
        result["latency_us"]["count"].as_u64().unwrap_or(0) > 0,
        "{result:#}"
    );
    assert!(result["latency_us"]["p99"].as_u64() >= result["latency_us"]["p50"].as_u64());
}

#[test]
fn bench_pairs_against_tern_loses_nothing_at_qos_1() {
    let (_broker, port) = broker(|port| tern_serve(port, &[]));
    check(&bench_pairs(port, &[]));
}

#[test]
fn bench_pairs_against_mosquitto_loses_nothing_at_qos_1() {
    assert!(
        Path::new(MOSQUITTO).is_file(),
        "{MOSQUITTO} is missing: apt-get install mosquitto"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_broker, port) = broker(|port| {
        let config = dir.path().join("mosquitto.conf");
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
        std::fs::write(&config, text).expect("the Mosquitto configuration");
        let mut command = Command::new(MOSQUITTO);
        command.arg("-c").arg(config);
        command
    });
    check(&bench_pairs(port, &[]));
}

#[test]
fn bench_connects_with_the_credentials_it_is_given() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let passwords = dir.path().join("passwords");
    let created = Command::new(TERN)
        .args(["passwd", "-c", "-b"])
        .arg(&passwords)
        .args(["bench-user", "bench-secret"])
        .status()
        .expect("tern passwd runs");
    assert!(created.success(), "tern passwd failed");
    let password_file = passwords.display().to_string();
    let (_broker, port) = broker(|port| tern_serve(port, &["--password-file", &password_file]));
    check(&bench_pairs(
        port,
        &["-u", "bench-user", "-P", "bench-secret"],
    ));

    let (succeeded, stdout, stderr) = run_pairs(port, &["-u", "bench-user", "-P", "wrong"]);
    assert!(!succeeded, "a wrong password was accepted: {stdout}");
    assert!(
        stderr.contains("connections failed") || stderr.contains("refused"),
        "{stderr}\n{stdout}"
    );
}

/// PEM files in a directory: a CA, and a server and a client certificate it
/// signed, each with its key.
struct Certificates {
    ca: String,
    server: String,
    server_key: String,
    client: String,
    client_key: String,
}

/// Makes [`Certificates`] in `dir`; the server's is for 127.0.0.1.
fn certificates(dir: &Path) -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a CA key"))
        .expect("the CA certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("a PEM file");
        path.display().to_string()
    };
    let signed = |names: Vec<String>| {
        let key = KeyPair::generate().expect("a key");
        let certificate = CertificateParams::new(names)
            .expect("certificate parameters")
            .signed_by(&key, &ca)
            .expect("a certificate");
        (certificate.pem(), key.serialize_pem())
    };
    let (server, server_key) = signed(vec!["127.0.0.1".to_string()]);
    let (client, client_key) = signed(vec!["bench-client".to_string()]);
    Certificates {
        ca: write("ca.pem", ca.pem()),
        server: write("server.pem", server),
        server_key: write("server.key", server_key),
        client: write("client.pem", client),
        client_key: write("client.key", client_key),
    }
}

/// `tern serve` in memory with one TLS listener on 127.0.0.1:`port`, and
/// these extra lines in its `[[listener]]` table.
fn tern_tls(dir: &Path, port: u16, files: &Certificates, extra: &str) -> Command {
    let config = dir.join("tern.toml");
    let text = format!(
        "data_dir = \"\"\n[[listener]]\nbind = \"127.0.0.1:{port}\"\nkind = \"tls\"\n\
         cert = {:?}\nkey = {:?}\n{extra}",
        files.server, files.server_key
    );
    std::fs::write(&config, text).expect("the Tern configuration");
    let mut command = Command::new(TERN);
    command.args(["serve", "--log", "warn", "--config"]);
    command.arg(config);
    command
}

#[test]
fn bench_measures_a_tls_listener_with_the_ca_it_is_given() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = certificates(dir.path());
    let other_dir = tempfile::tempdir().expect("another temporary directory");
    let other = certificates(other_dir.path());
    let (_broker, port) = broker(|port| tern_tls(dir.path(), port, &files, ""));
    check(&bench_pairs(port, &["--cafile", &files.ca]));

    let (succeeded, stdout, stderr) = run_pairs(port, &["--cafile", &other.ca]);
    assert!(
        !succeeded,
        "a certificate from another CA was accepted: {stdout}"
    );
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("--cafile must hold"),
        "{stderr}\n{stdout}"
    );

    let (succeeded, _, stderr) = run_pairs(port, &["--tls"]);
    assert!(!succeeded);
    assert!(stderr.contains("--tls needs --cafile"), "{stderr}");
}

#[test]
fn bench_presents_a_client_certificate_where_the_listener_requires_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = certificates(dir.path());
    let mutual = format!("ca = {:?}\nrequire_client_cert = true\n", files.ca);
    let (_broker, port) = broker(|port| tern_tls(dir.path(), port, &files, &mutual));
    let with_certificate = [
        "--cafile",
        &files.ca,
        "--cert",
        &files.client,
        "--key",
        &files.client_key,
    ];
    check(&bench_pairs(port, &with_certificate));

    let (succeeded, stdout, stderr) = run_pairs(port, &["--cafile", &files.ca]);
    assert!(
        !succeeded,
        "connected without a client certificate: {stdout}"
    );
    assert!(stderr.contains("could not be set up"), "{stderr}");
}

#[test]
fn bench_pub_keeps_its_window_moving_on_acknowledgements_alone() {
    let (_broker, port) = broker(|port| tern_serve(port, &[]));
    // Without subscribers the PUBACKs are the credit. A window of 50 whose
    // acknowledgements all arrive in one read must reopen at once, not at
    // the next read (there is none) or a stall a second later.
    let (succeeded, stdout, stderr) = run_bench(port, &["pub", "-c", "2"]);
    assert!(succeeded, "{stderr}\n{stdout}");
    let result: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    let sent = result["sent"].as_u64().unwrap_or(0);
    assert!(
        sent > 2 * 50 * 20,
        "only {sent} messages in two seconds: {result:#}"
    );
    assert_eq!(result["stalls"], 0, "{result:#}");
}
