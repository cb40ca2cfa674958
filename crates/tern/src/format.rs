//! How `tern sub` prints a message: the payload alone, `topic payload`
//! with -v, or a `-F` format string in the manner of mosquitto_sub.
//!
//! A format string may use `%t` topic, `%p` payload, `%x` payload in hex,
//! `%l` payload length, `%q` QoS, `%r` retain flag (0 or 1), `%m` packet
//! identifier (0 for QoS 0), and for MQTT 5 `%C` content type, `%D`
//! correlation data, `%E` message expiry interval, `%P` user properties
//! (`key:value`, space separated), `%R` response topic; `%%` is a percent
//! sign. `\n`, `\t`, `\r`, `\\` and `\0` are escapes.

use std::fmt::Write as _;

use tern_codec::Publish;

/// How each message is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// The payload only.
    Payload,
    /// `topic payload`.
    TopicAndPayload,
    /// A `-F` format string.
    Custom(String),
}

impl OutputFormat {
    /// Appends the printed form of `message` to `out`, then a newline
    /// unless `newline` is false.
    pub fn render(&self, message: &Publish, newline: bool, out: &mut Vec<u8>) {
        match self {
            Self::Payload => out.extend_from_slice(&message.payload),
            Self::TopicAndPayload => {
                out.extend_from_slice(message.topic.as_bytes());
                out.push(b' ');
                out.extend_from_slice(&message.payload);
            }
            Self::Custom(format) => render_custom(format, message, out),
        }
        if newline {
            out.push(b'\n');
        }
    }
}

fn render_custom(format: &str, message: &Publish, out: &mut Vec<u8>) {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some(code) => render_field(code, message, out),
                None => out.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('r') => out.push(b'\r'),
                Some('0') => out.push(0),
                Some('\\') | None => out.push(b'\\'),
                Some(other) => {
                    out.push(b'\\');
                    push_char(out, other);
                }
            },
            other => push_char(out, other),
        }
    }
}

fn render_field(code: char, message: &Publish, out: &mut Vec<u8>) {
    let properties = message.properties();
    let mut text = String::new();
    match code {
        't' => out.extend_from_slice(message.topic.as_bytes()),
        'p' => out.extend_from_slice(&message.payload),
        'x' => message.payload.iter().for_each(|byte| {
            let _ = write!(text, "{byte:02x}");
        }),
        'l' => text = message.payload.len().to_string(),
        'q' => text = message.qos.as_u8().to_string(),
        'r' => text = u8::from(message.retain).to_string(),
        'm' => text = message.packet_id.map_or(0, |id| id.get()).to_string(),
        'C' => {
            text = properties
                .content_type
                .as_deref()
                .unwrap_or_default()
                .to_owned()
        }
        'D' => {
            out.extend_from_slice(properties.correlation_data.as_deref().unwrap_or_default());
        }
        'E' => {
            if let Some(expiry) = properties.message_expiry_interval {
                text = expiry.to_string();
            }
        }
        'P' => {
            let pairs: Vec<String> = properties
                .user_properties
                .iter()
                .map(|(key, value)| format!("{key}:{value}"))
                .collect();
            text = pairs.join(" ");
        }
        'R' => {
            text = properties
                .response_topic
                .as_deref()
                .unwrap_or_default()
                .to_owned()
        }
        '%' => text.push('%'),
        other => {
            text.push('%');
            text.push(other);
        }
    }
    out.extend_from_slice(text.as_bytes());
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut utf8 = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
}

#[cfg(test)]
mod tests {
    use tern_codec::QoS;

    use super::*;

    fn message() -> Publish {
        let mut message = Publish::new("sensors/1", "21.5");
        message.qos = QoS::AtLeastOnce;
        message.packet_id = tern_codec::PacketId::new(4);
        message.retain = true;
        message.properties_mut().user_properties = vec![("unit".into(), "C".into())];
        message.properties_mut().message_expiry_interval = Some(60);
        message
    }

    fn render(format: &OutputFormat, newline: bool) -> String {
        let mut out = Vec::new();
        format.render(&message(), newline, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn payload_and_verbose_forms() {
        assert_eq!(render(&OutputFormat::Payload, true), "21.5\n");
        assert_eq!(render(&OutputFormat::Payload, false), "21.5");
        assert_eq!(
            render(&OutputFormat::TopicAndPayload, true),
            "sensors/1 21.5\n"
        );
    }

    #[test]
    fn format_strings_expand_fields_and_escapes() {
        let format = OutputFormat::Custom(r"%t q%q r%r m%m %l %x\t%P %E 100%%%z".into());
        assert_eq!(
            render(&format, false),
            "sensors/1 q1 r1 m4 4 32312e35\tunit:C 60 100%%z"
        );
    }
}
