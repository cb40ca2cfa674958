//! [`Acl`]: which client may publish, receive and subscribe to which
//! topics, read from a Mosquitto-style ACL file.
//!
//! # Grammar
//!
//! One statement per line; empty lines and lines starting with `#` are
//! skipped; words are separated by spaces.
//!
//! ```text
//! topic   [deny] [ACCESS] FILTER   a rule of the current section
//! pattern [deny] [ACCESS] FILTER   a rule for every client; %u is the user
//!                                  name, %c the client identifier
//! user NAME                        the following topic rules are NAME's
//! client ID                        the following topic rules are those of
//!                                  the client with identifier ID (Tern)
//! ACCESS := read | write | readwrite | subscribe | a comma list of
//!           read, write and subscribe (Tern), such as write,subscribe
//! ```
//!
//! Topic rules before the first `user` or `client` line apply to clients
//! that connected without a user name (as in Mosquitto). `ACCESS` defaults
//! to `readwrite`. `read` lets a client receive messages and subscribe to
//! filters within `FILTER` (as in Mosquitto), `subscribe` only lets it
//! subscribe, `write` lets it publish, `readwrite` all three. The filter is
//! the rest of the line. `deny` alone (Mosquitto's `topic deny FILTER`)
//! denies all three; `deny write FILTER` denies only publishing.
//!
//! # Decision
//!
//! For one request (publish to a topic, receive a message of a topic,
//! subscribe to a filter) the rules that apply to the client are those of
//! its section (user name or anonymous), of its client identifier, and
//! every pattern. A matching `deny` rule refuses; otherwise a matching
//! allow rule grants; otherwise the default decides (`acl_default`). A
//! topic matches a rule by MQTT's matching rule (`tern_codec`); a
//! subscription matches a rule when the rule's filter covers every topic
//! the subscription's filter matches (`a/#` covers `a/+/b`; `a/+` does not
//! cover `a/#`). A subscription that is only partly denied is granted, and
//! the messages it should not see are withheld by the read check on each
//! delivery.
//!
//! A pattern whose `%u` or `%c` would be replaced by a value containing
//! `+` or `#` does not apply (it would otherwise grant a wildcard to a
//! client that chose a name like `#`), nor does a `%u` pattern to a client
//! without a user name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tern_codec::TopicFilter;
use tern_codec::topic::matches_filter;

use crate::error::FileError;

/// What a client asks to do with a topic or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive a message published to the topic.
    Read,
    /// Publish to the topic.
    Write,
    /// Subscribe to the filter.
    Subscribe,
}

impl Access {
    const fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Write => 2,
            Self::Subscribe => 4,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The authenticated user name (`None`: anonymous).
    pub user: Option<&'a str>,
    /// The client identifier.
    pub client_id: &'a str,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Bits of [`Access::bit`].
    access: u8,
    deny: bool,
    filter: String,
}

/// The rules of an ACL file; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    clients: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// Which rules the next `topic` lines add to.
enum Section {
    Anonymous,
    User(String),
    Client(String),
}

impl Acl {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, FileError> {
        let mut acl = Self::default();
        let mut section = Section::Anonymous;
        for (number, line) in text.lines().enumerate() {
            let error = |message: String| FileError::Acl {
                path: PathBuf::from(path),
                line: number + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" | "client" if rest.is_empty() => {
                    return Err(error(format!(
                        "`{keyword}` needs a name: write `{keyword} NAME`"
                    )));
                }
                "user" => section = Section::User(rest.to_string()),
                "client" => section = Section::Client(rest.to_string()),
                "topic" | "pattern" => {
                    let rule = parse_rule(rest, keyword == "pattern").map_err(error)?;
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &section {
                            Section::Anonymous => acl.anonymous.push(rule),
                            Section::User(user) => {
                                acl.users.entry(user.clone()).or_default().push(rule);
                            }
                            Section::Client(id) => {
                                acl.clients.entry(id.clone()).or_default().push(rule);
                            }
                        }
                    }
                }
                other => {
                    return Err(error(format!(
                        "unknown statement `{other}`: lines start with `topic`, `pattern`, \
                         `user`, `client` or `#` (a comment)"
                    )));
                }
            }
        }
        Ok(acl)
    }

    /// The decision of the rules for `access` to `topic` (a topic name for
    /// read and write, a plain filter without `$share/` for subscribe):
    /// `Some(true)` allowed, `Some(false)` denied, `None` when no rule
    /// matches (the default applies).
    pub fn decide(&self, client: Client<'_>, access: Access, topic: &str) -> Option<bool> {
        let mut allowed = false;
        let mut check = |rule: &Rule, filter: &str| {
            if rule.access & access.bit() == 0 {
                return false;
            }
            let applies = match access {
                Access::Read | Access::Write => matches_filter(filter, topic),
                Access::Subscribe => covers(filter, topic),
            };
            if applies {
                if rule.deny {
                    return true;
                }
                allowed = true;
            }
            false
        };
        let section = match client.user {
            None => Some(&self.anonymous),
            Some(user) => self.users.get(user),
        };
        let fixed = section
            .into_iter()
            .chain(self.clients.get(client.client_id))
            .flatten();
        for rule in fixed {
            if check(rule, &rule.filter) {
                return Some(false);
            }
        }
        for rule in &self.patterns {
            let Some(filter) = substitute(&rule.filter, client) else {
                continue;
            };
            if check(rule, &filter) {
                return Some(false);
            }
        }
        allowed.then_some(true)
    }
}

/// `pattern` with `%u` and `%c` replaced; `None` when it does not apply.
fn substitute(pattern: &str, client: Client<'_>) -> Option<String> {
    let unsafe_value = |value: &str| value.contains(['+', '#']);
    let mut filter = pattern.to_string();
    if pattern.contains("%u") {
        let user = client.user.filter(|user| !unsafe_value(user))?;
        filter = filter.replace("%u", user);
    }
    if pattern.contains("%c") {
        if unsafe_value(client.client_id) {
            return None;
        }
        filter = filter.replace("%c", client.client_id);
    }
    Some(filter)
}

fn parse_rule(rest: &str, pattern: bool) -> Result<Rule, String> {
    let fix = "write `topic [deny] [read|write|readwrite|subscribe] FILTER`";
    let mut words: Vec<&str> = rest.splitn(3, [' ', '\t']).collect();
    words.retain(|word| !word.is_empty());
    let mut deny = false;
    let mut access = None;
    let mut filter_start = 0;
    // Leading words are access words as long as a filter remains after.
    for (index, word) in words.iter().enumerate() {
        if index + 1 == words.len() {
            break;
        }
        if *word == "deny" && !deny && access.is_none() {
            deny = true;
        } else if access.is_none()
            && let Some(bits) = parse_access(word)?
        {
            access = Some(bits);
        } else {
            break;
        }
        filter_start = index + 1;
    }
    if words.len() == 1 && (words[0] == "deny" || parse_access(words[0])?.is_some()) {
        // `topic read` is a forgotten filter far more often than a topic
        // named "read" (write that one `topic readwrite read`).
        return Err(format!("a rule without a topic filter: {fix}"));
    }
    let filter = words[filter_start..].join(" ");
    let filter = filter.trim();
    if filter.is_empty() {
        return Err(format!("a rule without a topic filter: {fix}"));
    }
    let checked = if pattern {
        filter.replace("%u", "u").replace("%c", "c")
    } else {
        filter.to_string()
    };
    match TopicFilter::new(checked.as_str()) {
        Ok(parsed) if parsed.is_shared() => {
            return Err(format!(
                "{filter:?} is a shared subscription: write the filter without \
                 `$share/GROUP/`, rules apply to what is shared"
            ));
        }
        Ok(_) => {}
        Err(cause) => return Err(format!("{filter:?} is not a valid topic filter: {cause}")),
    }
    Ok(Rule {
        access: access.unwrap_or(7),
        deny,
        filter: filter.to_string(),
    })
}

/// The bits of an access word; `Ok(None)` if `word` is not one (it starts
/// the filter), an error for a comma list with an unknown part.
fn parse_access(word: &str) -> Result<Option<u8>, String> {
    let single = |part: &str| match part {
        "read" => Some(Access::Read.bit() | Access::Subscribe.bit()),
        "write" => Some(Access::Write.bit()),
        "readwrite" => Some(7),
        "subscribe" => Some(Access::Subscribe.bit()),
        _ => None,
    };
    if !word.contains(',') {
        return Ok(single(word));
    }
    let mut bits = 0;
    for part in word.split(',') {
        bits |= single(part).ok_or_else(|| {
            format!(
                "unknown access `{part}` in `{word}`: combine read, write and subscribe, \
                 as in `write,subscribe`"
            )
        })?;
    }
    Ok(Some(bits))
}

/// Whether every topic matched by `filter` is matched by `rule` (both
/// valid plain filters).
pub fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') != rule.starts_with('$') && rule.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    for rule_level in rule.split('/') {
        if rule_level == "#" {
            return true;
        }
        match filter_levels.next() {
            Some("#") | None => return false,
            Some(level) if rule_level == "+" || rule_level == level => {}
            Some(_) => return false,
        }
    }
    filter_levels.next().is_none()
}

#[cfg(test)]
mod tests;
