//! What outlives a message: retained messages, wills, persistent sessions;
//! and how the clients report a broker that refuses or is not there.

use crate::support::{Broker, Running, failure_of, run, stdout_of, tern, words};

/// Starts `tern sub -i ID ARGS` and waits until it is subscribed.
fn subscribed(broker: &Broker, id: &str, args: &str) -> Running {
    let port = broker.port();
    broker.subscriber(tern(&words(&format!("sub -p {port} -i {id} {args}"))), id)
}

/// Runs `tern sub ARGS` to its end and returns what it printed.
fn sub_output(broker: &Broker, args: &str) -> String {
    let port = broker.port();
    stdout_of(&run(tern(&words(&format!("sub -p {port} {args}")))))
}

/// Runs `tern pub ARGS` and checks that it succeeded.
fn publish(broker: &Broker, args: &str) {
    let port = broker.port();
    stdout_of(&run(tern(&words(&format!("pub -p {port} {args}")))));
}

#[test]
fn retained_messages_reach_later_subscribers_unless_skipped() {
    let broker = Broker::start();
    for version in ["311", "5"] {
        let topic = format!("e2e/retained/{version}");
        publish(&broker, &format!("-V {version} -q 1 -r -t {topic} -m kept"));

        let late = format!("-V {version} -t {topic} -C 1 -W 10 -F %r:%p");
        assert_eq!(sub_output(&broker, &late), "1:kept\n");

        // -R skips the stale retained message and prints the new one.
        let fresh_args = format!("-V {version} -t {topic} -R -C 1 -W 10");
        let fresh = subscribed(&broker, &format!("fresh-{version}"), &fresh_args);
        publish(&broker, &format!("-V {version} -t {topic} -m new"));
        assert_eq!(stdout_of(&fresh.wait()), "new\n");

        // --retained-only prints retained messages and stops at the first live one.
        let only_args = format!("-V {version} -t {topic} --retained-only -W 10");
        let only = subscribed(&broker, &format!("only-{version}"), &only_args);
        publish(&broker, &format!("-V {version} -t {topic} -m live"));
        assert_eq!(stdout_of(&only.wait()), "kept\n");

        // An empty retained message clears it.
        publish(&broker, &format!("-V {version} -q 1 -r -n -t {topic}"));
        assert_eq!(
            sub_output(&broker, &format!("-V {version} -t {topic} -W 1")),
            ""
        );
    }
    // MQTT 5 retain handling 2: no retained message on subscribing.
    publish(&broker, "-q 1 -r -t e2e/rh -m kept");
    let never = subscribed(
        &broker,
        "never",
        "-V 5 -t e2e/rh --retain-handling 2 -C 1 -W 10",
    );
    publish(&broker, "-t e2e/rh -m live");
    assert_eq!(stdout_of(&never.wait()), "live\n");
}

#[test]
fn a_killed_subscriber_leaves_its_will_and_a_stopped_one_does_not() {
    let broker = Broker::start();
    for version in ["311", "5"] {
        let watcher_id = format!("watcher-{version}");
        let watcher_args = format!("-V {version} -t e2e/will/{version}/# -C 2 -v -W 10");
        let watcher = subscribed(&broker, &watcher_id, &watcher_args);

        // Stopped with SIGTERM, `tern sub` disconnects: no will.
        let polite_id = format!("polite-{version}");
        let polite_args = format!(
            "-V {version} -t e2e/unrelated --will-topic e2e/will/{version}/polite --will-payload unwanted"
        );
        let polite = subscribed(&broker, &polite_id, &polite_args);
        let status = std::process::Command::new("kill")
            .args(["-TERM", &polite.pid().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success());
        stdout_of(&polite.wait());
        broker.wait_for_log(&format!("Client {polite_id} disconnected.\n"));

        // Killed outright, it cannot say goodbye: the broker publishes its will.
        let victim_id = format!("victim-{version}");
        let victim_topic = format!("e2e/will/{version}/victim");
        let victim_args = format!(
            "-V {version} -t e2e/unrelated --will-topic {victim_topic} --will-payload gone --will-qos 1"
        );
        let mut victim = subscribed(&broker, &victim_id, &victim_args);
        victim.kill();
        broker.wait_for_log(&format!(
            "Sending PUBLISH to {watcher_id} (d0, q0, r0, m0, '{victim_topic}'"
        ));
        // A marker published afterwards shows that no other will came first.
        let marker = format!("e2e/will/{version}/marker");
        publish(&broker, &format!("-V {version} -t {marker} -m end"));
        assert_eq!(
            stdout_of(&watcher.wait()),
            format!("{victim_topic} gone\n{marker} end\n")
        );
    }
}

#[test]
fn a_persistent_session_keeps_messages_while_the_subscriber_is_away() {
    let broker = Broker::start();
    for version in ["311", "5"] {
        let id = format!("keeper-{version}");
        let args = format!("-V {version} -c -q 1 -t e2e/persistent/{version}");
        let first = subscribed(&broker, &id, &format!("{args} -W 1"));
        stdout_of(&first.wait());
        publish(
            &broker,
            &format!("-V {version} -q 1 -t e2e/persistent/{version} -m queued"),
        );
        let back = sub_output(&broker, &format!("-i {id} {args} -C 1 -W 10"));
        assert_eq!(back, "queued\n");
    }
}

#[test]
fn refusals_and_missing_brokers_are_explained() {
    let broker = Broker::with_config("allow_anonymous false\n");
    let port = broker.port();
    for version in ["311", "5"] {
        let line = format!("pub -p {port} -V {version} -q 1 -t a -m x");
        let message = failure_of(&run(tern(&words(&line))));
        assert!(
            message.contains("refused the connection: not authorized"),
            "{message}"
        );
        assert!(
            message.contains("(-u)") && message.contains("(-P)"),
            "{message}"
        );
    }
    drop(broker);
    let message = failure_of(&run(tern(&words(&format!("sub -p {port} -t a")))));
    assert!(message.contains("nothing is listening there"), "{message}");
}
