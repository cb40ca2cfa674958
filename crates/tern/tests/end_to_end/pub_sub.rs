//! Messages between `tern pub`, `tern sub`, `mosquitto_pub` and
//! `mosquitto_sub`, at QoS 0, 1 and 2, in MQTT 3.1.1 and 5.

use crate::support::{
    Broker, Running, failure_of, file_in, mosquitto_client, run, run_with_input, stdout_of, tern,
    words,
};

const VERSIONS: [&str; 2] = ["311", "5"];
const QOS_LEVELS: [&str; 3] = ["0", "1", "2"];

/// Starts `tern sub -i ID ARGS` and waits until it is subscribed.
fn tern_sub(broker: &Broker, id: &str, args: &str) -> Running {
    let port = broker.port();
    let command = tern(&words(&format!("sub -p {port} -i {id} -W 10 {args}")));
    broker.subscriber(command, id)
}

#[test]
fn tern_sub_receives_what_mosquitto_pub_sends() {
    let broker = Broker::start();
    let port = broker.port();
    for version in VERSIONS {
        for qos in QOS_LEVELS {
            let topic = format!("e2e/mosquitto/{version}/{qos}");
            let id = format!("tern-sub-{version}-{qos}");
            let subscriber = tern_sub(
                &broker,
                &id,
                &format!("-V {version} -q {qos} -t {topic} -C 1"),
            );
            let payload = format!("from mosquitto_pub, v{version} q{qos}");
            let mut publisher = mosquitto_client(
                "mosquitto_pub",
                &words(&format!("-p {port} -V {version} -q {qos} -t {topic}")),
            );
            publisher.args(["-m", &payload]);
            stdout_of(&run(publisher));
            assert_eq!(stdout_of(&subscriber.wait()), format!("{payload}\n"));
        }
    }
}

#[test]
fn tern_sub_receives_what_tern_pub_sends() {
    let broker = Broker::start();
    let port = broker.port();
    for version in VERSIONS {
        for qos in QOS_LEVELS {
            let topic = format!("e2e/tern/{version}/{qos}");
            let id = format!("tern-sub-{version}-{qos}");
            let args = format!("-V {version} -q {qos} -t e2e/tern/# -C 1 -v");
            let subscriber = tern_sub(&broker, &id, &args);
            let payload = format!("from tern pub, v{version} q{qos}");
            let mut publisher = tern(&words(&format!(
                "pub -p {port} -V {version} -q {qos} -t {topic}"
            )));
            publisher.args(["-m", &payload]);
            stdout_of(&run(publisher));
            assert_eq!(
                stdout_of(&subscriber.wait()),
                format!("{topic} {payload}\n")
            );
        }
    }
}

#[test]
fn mosquitto_sub_receives_what_tern_pub_sends() {
    let broker = Broker::start();
    let port = broker.port();
    for version in VERSIONS {
        for qos in QOS_LEVELS {
            let topic = format!("e2e/to-mosquitto/{version}/{qos}");
            let id = format!("mosquitto-sub-{version}-{qos}");
            let mut subscriber = mosquitto_client(
                "mosquitto_sub",
                &words(&format!(
                    "-p {port} -i {id} -V {version} -q {qos} -t {topic} -C 1 -W 10"
                )),
            );
            subscriber.args(["-F", "%q %p"]);
            let subscriber = broker.subscriber(subscriber, &id);
            let payload = format!("from tern pub, v{version} q{qos}");
            let mut publisher = tern(&words(&format!(
                "pub -p {port} -V {version} -q {qos} -t {topic}"
            )));
            publisher.args(["-m", &payload]);
            stdout_of(&run(publisher));
            assert_eq!(stdout_of(&subscriber.wait()), format!("{qos} {payload}\n"));
        }
    }
}

#[test]
fn mqtt5_properties_reach_mosquitto_sub() {
    let broker = Broker::start();
    let port = broker.port();
    let mut subscriber = mosquitto_client(
        "mosquitto_sub",
        &words(&format!("-p {port} -i props -V 5 -t e2e/props -C 1 -W 10")),
    );
    subscriber.args(["-F", "%P|%E|%C|%R|%D|%p"]);
    let subscriber = broker.subscriber(subscriber, "props");
    let publisher = tern(&words(&format!(
        "pub -p {port} -V 5 -q 1 -t e2e/props -m body \
         -D publish user-property unit celsius \
         -D publish message-expiry-interval 600 \
         -D publish content-type text/plain \
         -D publish response-topic e2e/replies \
         -D publish correlation-data req-7"
    )));
    stdout_of(&run(publisher));
    let printed = stdout_of(&subscriber.wait());
    // Mosquitto prints the remaining expiry, which may have ticked down.
    let without_expiry = printed.replacen("|600|", "|", 1).replacen("|599|", "|", 1);
    assert_eq!(
        without_expiry, "unit:celsius|text/plain|e2e/replies|req-7|body\n",
        "{printed}"
    );
}

#[test]
fn lines_files_and_repeats_arrive_in_order() {
    let broker = Broker::start();
    let port = broker.port();
    let subscriber = tern_sub(&broker, "collector", "-V 5 -q 2 -t e2e/many -C 7");

    let from_lines = tern(&words(&format!("pub -p {port} -V 5 -q 2 -t e2e/many -l")));
    stdout_of(&run_with_input(from_lines, b"first\nsecond\n\nfourth\n"));
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let file = file_in(dir.path(), "payload", b"from a file");
    let mut from_file = tern(&words(&format!("pub -p {port} -q 1 -t e2e/many")));
    from_file.arg("-f").arg(file);
    stdout_of(&run(from_file));
    let repeated =
        format!("pub -p {port} -q 1 -t e2e/many -m again --repeat 2 --repeat-delay 0.05");
    stdout_of(&run(tern(&words(&repeated))));

    assert_eq!(
        stdout_of(&subscriber.wait()),
        "first\nsecond\n\nfourth\nfrom a file\nagain\nagain\n"
    );
}

/// A CA, and a server certificate and key it signed for localhost and
/// 127.0.0.1, as PEM
/// files in `dir` (readable by Mosquitto after it drops root): the paths of
/// the CA, the certificate and the key.
fn tls_files(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::os::unix::fs::PermissionsExt;

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a CA key"))
        .expect("the CA certificate");
    let key = KeyPair::generate().expect("a server key");
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server parameters")
        .signed_by(&key, &ca)
        .expect("the server certificate");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let files = [
        file_in(dir, "ca.pem", ca.pem().as_bytes()),
        file_in(dir, "server.pem", server.pem().as_bytes()),
        file_in(dir, "server.key", key.serialize_pem().as_bytes()),
    ];
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    files
}

#[test]
fn tern_pub_and_sub_speak_tls_with_the_ca_they_are_given() {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let [ca, cert, key] = tls_files(dir.path());
    let broker = Broker::with_config(&format!(
        "allow_anonymous true\ncertfile {}\nkeyfile {}\n",
        cert.display(),
        key.display()
    ));
    let port = broker.port();
    let cafile = ca.display().to_string();
    for version in VERSIONS {
        let topic = format!("e2e/tls/{version}");
        let id = format!("tls-sub-{version}");
        let subscriber = tern_sub(
            &broker,
            &id,
            &format!("-V {version} -q 1 -t {topic} -C 1 --cafile {cafile}"),
        );
        let publish =
            format!("pub -p {port} -V {version} -q 1 -t {topic} -m secret --cafile {cafile}");
        stdout_of(&run(tern(&words(&publish))));
        assert_eq!(stdout_of(&subscriber.wait()), "secret\n");
    }

    let other_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let [other_ca, _, _] = tls_files(other_dir.path());
    let untrusted = format!(
        "pub -p {port} -t e2e/tls -m x --cafile {}",
        other_ca.display()
    );
    let error = failure_of(&run(tern(&words(&untrusted))));
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(error.contains("--cafile must hold"), "{error}");
}
