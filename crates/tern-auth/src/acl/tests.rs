//! Parsing and decisions of ACL files, and filter coverage against the
//! reference matcher.

use super::*;

const FILE: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic write,subscribe drop/box
topic deny write status/+

client sensor-1
topic write sensors/1/#

pattern write devices/%c/out
pattern read users/%u/in
";

fn acl() -> Acl {
    Acl::parse(FILE, Path::new("acl")).unwrap()
}

fn alice(client_id: &str) -> Client<'_> {
    Client {
        user: Some("alice"),
        client_id,
    }
}

#[test]
fn sections_apply_to_their_clients() {
    let acl = acl();
    let anonymous = Client {
        user: None,
        client_id: "x",
    };
    assert_eq!(
        acl.decide(anonymous, Access::Read, "public/news"),
        Some(true)
    );
    assert_eq!(acl.decide(anonymous, Access::Write, "public/news"), None);
    assert_eq!(acl.decide(alice("a"), Access::Read, "public/news"), None);
    assert_eq!(
        acl.decide(alice("a"), Access::Write, "alice/x/y"),
        Some(true)
    );
    assert_eq!(
        acl.decide(alice("a"), Access::Read, "alice/secret"),
        Some(false)
    );
    assert_eq!(
        acl.decide(alice("a"), Access::Write, "status/a"),
        Some(false)
    );
    assert_eq!(acl.decide(alice("a"), Access::Read, "status/a"), None);
    let sensor = Client {
        user: Some("bob"),
        client_id: "sensor-1",
    };
    assert_eq!(acl.decide(sensor, Access::Write, "sensors/1/t"), Some(true));
    assert_eq!(acl.decide(sensor, Access::Write, "sensors/2/t"), None);
}

#[test]
fn access_words_combine() {
    let acl = acl();
    assert_eq!(
        acl.decide(alice("a"), Access::Write, "drop/box"),
        Some(true)
    );
    assert_eq!(
        acl.decide(alice("a"), Access::Subscribe, "drop/box"),
        Some(true)
    );
    assert_eq!(acl.decide(alice("a"), Access::Read, "drop/box"), None);
    let anonymous = Client {
        user: None,
        client_id: "x",
    };
    assert_eq!(
        acl.decide(anonymous, Access::Subscribe, "public/+"),
        Some(true)
    );
    assert_eq!(acl.decide(anonymous, Access::Subscribe, "#"), None);
}

#[test]
fn patterns_substitute_user_and_client() {
    let acl = acl();
    assert_eq!(
        acl.decide(alice("d7"), Access::Write, "devices/d7/out"),
        Some(true)
    );
    assert_eq!(
        acl.decide(alice("d7"), Access::Write, "devices/d8/out"),
        None
    );
    assert_eq!(
        acl.decide(alice("d7"), Access::Read, "users/alice/in"),
        Some(true)
    );
    let anonymous = Client {
        user: None,
        client_id: "d7",
    };
    assert_eq!(acl.decide(anonymous, Access::Read, "users//in"), None);
    let sneaky = Client {
        user: Some("#"),
        client_id: "+",
    };
    assert_eq!(acl.decide(sneaky, Access::Read, "users/x/in"), None);
    assert_eq!(acl.decide(sneaky, Access::Write, "devices/x/out"), None);
}

#[test]
fn deny_wins_over_allow() {
    let acl = Acl::parse("pattern deny #\npattern readwrite a/#\n", Path::new("a")).unwrap();
    assert_eq!(acl.decide(alice("c"), Access::Write, "a/b"), Some(false));
}

#[test]
fn coverage_of_filters() {
    let cases = [
        ("a/#", "a/+/b", true),
        ("a/#", "a", true),
        ("a/#", "a/#", true),
        ("a/+", "a/#", false),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("a/b", "a/+", false),
        ("#", "$SYS/x", false),
        ("$SYS/#", "$SYS/x", true),
        ("+/+", "a/+", true),
    ];
    for (rule, filter, expected) in cases {
        assert_eq!(covers(rule, filter), expected, "{rule} covers {filter}");
    }
    // Covering agrees with matching on topics.
    for (rule, topic) in [("a/#", "a/b"), ("+/b", "x/b"), ("a/+", "a/b/c")] {
        assert_eq!(
            covers(rule, topic),
            matches_filter(rule, topic),
            "{rule} {topic}"
        );
    }
}

/// Every string of 1 to `max` levels over `alphabet`.
fn words(alphabet: &[&str], max: usize) -> Vec<String> {
    let mut all: Vec<String> = alphabet.iter().map(|level| level.to_string()).collect();
    let mut last = all.clone();
    for _ in 1..max {
        last = last
            .iter()
            .flat_map(|prefix| {
                alphabet
                    .iter()
                    .map(move |level| format!("{prefix}/{level}"))
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

/// `covers` never claims more than MQTT's matching rule gives: checked
/// exhaustively over small filters and topics against the reference
/// matcher of tern-codec.
#[test]
fn coverage_is_sound_against_the_reference_matcher() {
    let filters: Vec<String> = words(&["a", "b", "+", "#"], 3)
        .into_iter()
        .chain(["$s/#".to_string(), "$s/a".to_string()])
        .filter(|filter| TopicFilter::new(filter.as_str()).is_ok())
        .collect();
    let mut topics = words(&["a", "c", ""], 4);
    topics.extend(["$s".to_string(), "$s/a".to_string()]);
    let mut covered = 0;
    for rule in &filters {
        for filter in &filters {
            if !covers(rule, filter) {
                continue;
            }
            covered += 1;
            for topic in &topics {
                assert!(
                    !matches_filter(filter, topic) || matches_filter(rule, topic),
                    "{rule} covers {filter}, yet {topic} matches only the filter"
                );
            }
        }
    }
    assert!(covered > 300, "the check saw only {covered} covering pairs");
}

#[test]
fn parse_errors_name_the_line_and_the_fix() {
    let cases = [
        ("user\n", 1, "user NAME"),
        ("\n\nsubscribe a\n", 3, "unknown statement `subscribe`"),
        ("topic read\n", 1, "without a topic filter"),
        ("topic\n", 1, "without a topic filter"),
        ("topic read,wirte a\n", 1, "unknown access `wirte`"),
        ("topic read a/#/b\n", 1, "not a valid topic filter"),
        ("topic $share/g/a\n", 1, "shared subscription"),
    ];
    for (text, line, expected) in cases {
        let error = Acl::parse(text, Path::new("/etc/tern/acl")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("/etc/tern/acl:{line}: ")),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn mosquitto_forms_parse() {
    let acl = Acl::parse(
        "topic foo/bar\ntopic deny foo/#\ntopic with space/x\n",
        Path::new("a"),
    )
    .unwrap();
    let anonymous = Client {
        user: None,
        client_id: "c",
    };
    assert_eq!(
        acl.decide(anonymous, Access::Read, "with space/x"),
        Some(true)
    );
    assert_eq!(acl.decide(anonymous, Access::Write, "foo/bar"), Some(false));
}
