//! `-D COMMAND NAME VALUE`: MQTT 5 properties named as mosquitto_pub and
//! mosquitto_sub name them, parsed into the codec's property sets.

use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use bytestring::ByteString;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};
use tern_codec::topic::validate_topic_name;
use tern_codec::{
    ConnectProperties, DisconnectProperties, PublishProperties, SubscribeProperties,
    UnsubscribeProperties, UserProperties, WillProperties,
};

/// The `-D` flag as given: one `[COMMAND, NAME, VALUE…]` per occurrence.
///
/// Written by hand rather than derived because clap's derive cannot yet
/// keep the occurrences of a multi-value flag apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertySpecs(pub Vec<Vec<String>>);

const PROPERTY_FLAG: &str = "property";

impl Args for PropertySpecs {
    fn augment_args(command: clap::Command) -> clap::Command {
        command.arg(
            Arg::new(PROPERTY_FLAG)
                .short('D')
                .long(PROPERTY_FLAG)
                .num_args(3..=4)
                .action(ArgAction::Append)
                .value_names(["COMMAND", "NAME", "VALUE"])
                .help(
                    "An MQTT 5 property: -D COMMAND NAME VALUE, or -D COMMAND user-property \
                     KEY VALUE. COMMAND is connect, publish, subscribe, unsubscribe, disconnect \
                     or will; NAME as mosquitto names it (message-expiry-interval, content-type, \
                     response-topic, correlation-data, session-expiry-interval, …). Repeatable; \
                     needs -V 5",
                ),
        )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for PropertySpecs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let specs = matches
            .get_occurrences::<String>(PROPERTY_FLAG)
            .map(|occurrences| {
                occurrences
                    .map(|values| values.cloned().collect())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self(specs))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The properties of every packet kind a client sends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Properties {
    /// For CONNECT.
    pub connect: ConnectProperties,
    /// For every PUBLISH.
    pub publish: PublishProperties,
    /// For SUBSCRIBE.
    pub subscribe: SubscribeProperties,
    /// For UNSUBSCRIBE.
    pub unsubscribe: UnsubscribeProperties,
    /// For DISCONNECT.
    pub disconnect: DisconnectProperties,
    /// For the will message.
    pub will: WillProperties,
}

/// The property names each command accepts, for error messages.
const ACCEPTED: &[(&str, &str)] = &[
    (
        "connect",
        "maximum-packet-size, receive-maximum, request-problem-information, request-response-information, session-expiry-interval, topic-alias-maximum, user-property",
    ),
    (
        "publish",
        "content-type, correlation-data, message-expiry-interval, payload-format-indicator, response-topic, topic-alias, user-property",
    ),
    ("subscribe", "subscription-identifier, user-property"),
    ("unsubscribe", "user-property"),
    (
        "disconnect",
        "reason-string, session-expiry-interval, user-property",
    ),
    (
        "will",
        "content-type, correlation-data, message-expiry-interval, payload-format-indicator, response-topic, user-property, will-delay-interval",
    ),
];

impl Properties {
    /// Parses every `-D` occurrence, each `[COMMAND, NAME, VALUE…]`.
    pub fn parse(specs: &[Vec<String>]) -> anyhow::Result<Self> {
        let mut properties = Self::default();
        for spec in specs {
            properties
                .set(spec)
                .with_context(|| format!("in -D {}", spec.join(" ")))?;
        }
        Ok(properties)
    }

    fn set(&mut self, spec: &[String]) -> anyhow::Result<()> {
        let [command, name, values @ ..] = spec else {
            bail!(
                "a property needs a command, a name and a value: -D publish content-type text/plain"
            );
        };
        let (command, name) = (command.as_str(), name.as_str());
        let Some((_, accepted)) = ACCEPTED.iter().find(|(known, _)| *known == command) else {
            bail!(
                "unknown command {command:?}: use connect, publish, subscribe, unsubscribe, disconnect or will"
            );
        };
        if name == "user-property" {
            let [key, value] = values else {
                bail!(
                    "user-property needs a key and a value: -D {command} user-property KEY VALUE"
                );
            };
            let pair = (
                ByteString::from(key.as_str()),
                ByteString::from(value.as_str()),
            );
            self.user_properties(command).push(pair);
            return Ok(());
        }
        let [value] = values else {
            bail!("{name} takes one value");
        };
        let unknown = || anyhow!("{command} has no property {name:?}; it accepts {accepted}");
        match command {
            "connect" => self.set_connect(name, value).ok_or_else(unknown)??,
            "publish" => {
                let publish = &mut self.publish;
                match name {
                    "topic-alias" => publish.topic_alias = Some(number(name, value, 1)?),
                    "content-type" => publish.content_type = Some(value.as_str().into()),
                    "correlation-data" => publish.correlation_data = Some(binary(value)),
                    "message-expiry-interval" => {
                        publish.message_expiry_interval = Some(number(name, value, 0)?);
                    }
                    "payload-format-indicator" => {
                        publish.payload_format_indicator = Some(flag(name, value)?);
                    }
                    "response-topic" => publish.response_topic = Some(topic(name, value)?),
                    _ => return Err(unknown()),
                }
            }
            "subscribe" if name == "subscription-identifier" => {
                let id: u32 = number(name, value, 1)?;
                if id > 268_435_455 {
                    bail!("subscription-identifier must be 1 to 268435455, not {id}");
                }
                self.subscribe.subscription_identifier = Some(id);
            }
            "disconnect" if name == "session-expiry-interval" => {
                self.disconnect.session_expiry_interval = Some(number(name, value, 0)?);
            }
            "disconnect" if name == "reason-string" => {
                self.disconnect.reason_string = Some(value.as_str().into());
            }
            "will" => {
                let will = &mut self.will;
                match name {
                    "will-delay-interval" => {
                        will.will_delay_interval = Some(number(name, value, 0)?)
                    }
                    "content-type" => will.content_type = Some(value.as_str().into()),
                    "correlation-data" => will.correlation_data = Some(binary(value)),
                    "message-expiry-interval" => {
                        will.message_expiry_interval = Some(number(name, value, 0)?);
                    }
                    "payload-format-indicator" => {
                        will.payload_format_indicator = Some(flag(name, value)?);
                    }
                    "response-topic" => will.response_topic = Some(topic(name, value)?),
                    _ => return Err(unknown()),
                }
            }
            _ => return Err(unknown()),
        }
        Ok(())
    }

    /// Sets a CONNECT property; `None` if there is no such property.
    fn set_connect(&mut self, name: &str, value: &str) -> Option<anyhow::Result<()>> {
        let connect = &mut self.connect;
        let result = match name {
            "session-expiry-interval" => {
                number(name, value, 0).map(|v| connect.session_expiry_interval = Some(v))
            }
            "receive-maximum" => number(name, value, 1).map(|v| connect.receive_maximum = Some(v)),
            "topic-alias-maximum" => {
                number(name, value, 0).map(|v| connect.topic_alias_maximum = Some(v))
            }
            "maximum-packet-size" => {
                number(name, value, 1).map(|v| connect.maximum_packet_size = Some(v))
            }
            "request-problem-information" => {
                flag(name, value).map(|v| connect.request_problem_information = Some(v))
            }
            "request-response-information" => {
                flag(name, value).map(|v| connect.request_response_information = Some(v))
            }
            _ => return None,
        };
        Some(result)
    }

    fn user_properties(&mut self, command: &str) -> &mut UserProperties {
        match command {
            "connect" => &mut self.connect.user_properties,
            "publish" => &mut self.publish.user_properties,
            "subscribe" => &mut self.subscribe.user_properties,
            "unsubscribe" => &mut self.unsubscribe.user_properties,
            "disconnect" => &mut self.disconnect.user_properties,
            _ => &mut self.will.user_properties,
        }
    }
}

/// Parses a whole number of type `T` that is at least `minimum`.
fn number<T>(name: &str, value: &str, minimum: T) -> anyhow::Result<T>
where
    T: FromStr + PartialOrd + Copy + std::fmt::Display + num_bounds::Max,
{
    let parsed: T = value.parse().map_err(|_| {
        anyhow!(
            "{name} must be a whole number from {minimum} to {}, not {value:?}",
            T::MAX
        )
    })?;
    if parsed < minimum {
        bail!(
            "{name} must be a whole number from {minimum} to {}, not {value:?}",
            T::MAX
        );
    }
    Ok(parsed)
}

/// The largest value of the integer types properties use.
mod num_bounds {
    pub trait Max {
        const MAX: Self;
    }
    impl Max for u16 {
        const MAX: Self = u16::MAX;
    }
    impl Max for u32 {
        const MAX: Self = u32::MAX;
    }
}

fn flag(name: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => bail!("{name} must be 0 or 1, not {value:?}"),
    }
}

fn topic(name: &str, value: &str) -> anyhow::Result<ByteString> {
    validate_topic_name(value)
        .map_err(|error| anyhow!("{name} {value:?} is not a topic name: {error}"))?;
    Ok(value.into())
}

fn binary(value: &str) -> Bytes {
    Bytes::copy_from_slice(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(specs: &[&[&str]]) -> anyhow::Result<Properties> {
        let specs: Vec<Vec<String>> = specs
            .iter()
            .map(|spec| spec.iter().map(|s| s.to_string()).collect())
            .collect();
        Properties::parse(&specs)
    }

    #[test]
    fn common_publish_properties_parse() {
        let properties = parse(&[
            &["publish", "user-property", "unit", "celsius"],
            &["publish", "message-expiry-interval", "60"],
            &["publish", "content-type", "text/plain"],
            &["publish", "response-topic", "replies/1"],
            &["publish", "correlation-data", "abc"],
            &["connect", "session-expiry-interval", "300"],
            &["will", "will-delay-interval", "5"],
        ])
        .unwrap();
        let publish = &properties.publish;
        assert_eq!(publish.user_properties, [("unit".into(), "celsius".into())]);
        assert_eq!(publish.message_expiry_interval, Some(60));
        assert_eq!(publish.content_type.as_deref(), Some("text/plain"));
        assert_eq!(publish.response_topic.as_deref(), Some("replies/1"));
        assert_eq!(publish.correlation_data.as_deref(), Some(&b"abc"[..]));
        assert_eq!(properties.connect.session_expiry_interval, Some(300));
        assert_eq!(properties.will.will_delay_interval, Some(5));
    }

    #[test]
    fn mistakes_are_explained() {
        let message = |specs: &[&[&str]]| format!("{:#}", parse(specs).unwrap_err());
        assert!(message(&[&["publish", "colour", "red"]]).contains("it accepts content-type"));
        assert!(message(&[&["post", "content-type", "x"]]).contains("unknown command"));
        assert!(
            message(&[&["publish", "message-expiry-interval", "-1"]])
                .contains("from 0 to 4294967295")
        );
        assert!(message(&[&["connect", "receive-maximum", "0"]]).contains("from 1 to 65535"));
        assert!(message(&[&["publish", "user-property", "lonely"]]).contains("KEY VALUE"));
        assert!(message(&[&["publish", "response-topic", "a/#"]]).contains("not a topic name"));
    }
}
