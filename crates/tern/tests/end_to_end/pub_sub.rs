//! Messages between `tern pub`, `tern sub`, `mosquitto_pub` and
//! `mosquitto_sub`, at QoS 0, 1 and 2, in MQTT 3.1.1 and 5.

use crate::support::{
    Broker, Running, file_in, mosquitto_client, run, run_with_input, stdout_of, tern, words,
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
