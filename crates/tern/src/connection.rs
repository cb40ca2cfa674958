//! The connection flags that `tern pub` and `tern sub` share, how they
//! become [`ConnectOptions`], and how connection failures are explained.

use anyhow::{anyhow, bail};
use bytes::Bytes;
use clap::{Args, value_parser};
use tern_client::{Client, ClientError, ConnectOptions, DriverConfig, Events};
use tern_codec::topic::validate_topic_name;
use tern_codec::{LastWill, ProtocolVersion, QoS, ReasonCode};

use crate::properties::{Properties, PropertySpecs};
use crate::tls::{TlsArgs, tls_hint};
use crate::trace;

/// Where to connect and how to present the client.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Client identifier [default: tern-pub-… or tern-sub-…, unique per process].
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// MQTT version: 31, 311 or 5. 311 is the default, as with mosquitto_pub
    /// and mosquitto_sub, so that scripts behave the same; properties (-D)
    /// and subscription options need 5.
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION",
          default_value = "311", value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Keep alive in seconds; 0 turns keep-alive pings off.
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub keep_alive: u16,
    /// Keep the session on the broker after disconnecting (no clean
    /// session); needs -i.
    #[arg(short = 'c', long = "disable-clean-session")]
    pub persistent: bool,
    /// Topic of the will, which the broker publishes if this client
    /// disappears without disconnecting.
    #[arg(long, value_name = "TOPIC")]
    pub will_topic: Option<String>,
    /// Payload of the will [default: empty].
    #[arg(long, value_name = "PAYLOAD", requires = "will_topic")]
    pub will_payload: Option<String>,
    /// QoS of the will.
    #[arg(long, value_name = "QOS", default_value_t = 0, requires = "will_topic",
          value_parser = value_parser!(u8).range(0..=2))]
    pub will_qos: u8,
    /// Retain the will.
    #[arg(long, requires = "will_topic")]
    pub will_retain: bool,
    #[command(flatten)]
    pub properties: PropertySpecs,
    /// TLS: --cafile (and --cert/--key for a broker that asks for a client
    /// certificate), as mosquitto_pub and mosquitto_sub take them.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print every packet sent and received on standard error.
    #[arg(short = 'd', long)]
    pub debug: bool,
}

/// Parses -V as mosquitto does: 31, 311, 5, or mqttv31, mqttv311, mqttv5.
pub fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text.trim_start_matches("mqttv") {
        "31" => Ok(ProtocolVersion::V3_1),
        "311" => Ok(ProtocolVersion::V3_1_1),
        "5" => Ok(ProtocolVersion::V5),
        _ => Err(format!("unknown MQTT version {text:?}: use 31, 311 or 5")),
    }
}

/// Refuses a password without a user name before MQTT 5, where CONNECT
/// cannot carry one alone (-u and -P of `tern pub`, `sub` and `bench`).
pub fn check_credentials(
    version: ProtocolVersion,
    username: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<()> {
    if password.is_some() && username.is_none() && !version.is_v5() {
        bail!("a password (-P) needs a user name (-u) before MQTT 5: add -u USER");
    }
    Ok(())
}

/// The QoS of a 0..=2 value that clap has already range-checked.
pub fn qos(value: u8) -> QoS {
    match value {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A client identifier unique to this process and moment, short enough
/// for MQTT 3.1 (23 characters).
fn default_client_id(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "tern-{kind}-{:x}{:05x}",
        std::process::id(),
        nanos & 0xF_FFFF
    )
}

impl ConnectArgs {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The -D properties, checked against the protocol version.
    pub fn parse_properties(&self) -> anyhow::Result<Properties> {
        if !self.properties.0.is_empty() && !self.version.is_v5() {
            bail!("properties (-D) exist only in MQTT 5: add -V 5");
        }
        Properties::parse(&self.properties.0)
    }

    /// The options to connect with; `kind` ("pub" or "sub") names the
    /// default client identifier.
    pub fn connect_options(
        &self,
        kind: &str,
        properties: &Properties,
    ) -> anyhow::Result<ConnectOptions> {
        let client_id = match &self.id {
            Some(id) => id.clone(),
            None if self.persistent => {
                bail!("a persistent session (-c) needs a client identifier: add -i ID")
            }
            None => default_client_id(kind),
        };
        if self.version == ProtocolVersion::V3_1 && !(1..=23).contains(&client_id.len()) {
            bail!(
                "MQTT 3.1 needs a client identifier of 1 to 23 characters: change -i, or use -V 311 or -V 5"
            );
        }
        check_credentials(
            self.version,
            self.username.as_deref(),
            self.password.as_deref(),
        )?;
        let mut options = ConnectOptions::new(self.version, client_id);
        options.clean_start = !self.persistent;
        options.keep_alive = self.keep_alive;
        options.username = self.username.as_deref().map(Into::into);
        options.password = self.password.clone().map(Bytes::from);
        options.will = self.will(properties)?;
        let mut connect = properties.connect.clone();
        connect.topic_alias_maximum = connect
            .topic_alias_maximum
            .or(options.properties.topic_alias_maximum);
        options.properties = connect;
        Ok(options)
    }

    fn will(&self, properties: &Properties) -> anyhow::Result<Option<LastWill>> {
        let Some(topic) = &self.will_topic else {
            if !properties.will.is_empty() {
                bail!("will properties (-D will …) need a will: add --will-topic");
            }
            return Ok(None);
        };
        validate_topic_name(topic)
            .map_err(|error| anyhow!("invalid will topic {topic:?}: {error}"))?;
        Ok(Some(LastWill {
            qos: qos(self.will_qos),
            retain: self.will_retain,
            properties: properties.will.clone(),
            topic: topic.as_str().into(),
            payload: Bytes::from(self.will_payload.clone().unwrap_or_default()),
        }))
    }

    /// Connects and waits for the broker to accept, explaining a failure.
    pub async fn connect(&self, options: ConnectOptions) -> anyhow::Result<(Client, Events)> {
        let config = DriverConfig {
            trace: self
                .debug
                .then(|| trace::to_stderr(options.client_id.to_string())),
            ..DriverConfig::default()
        };
        let Some(tls) = self.tls.client(&self.host)? else {
            return Client::connect((self.host.as_str(), self.port), options, config)
                .await
                .map_err(|error| self.explain_connect_error(error));
        };
        let at = self.address();
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        let stream = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| self.explain_connect_error(ClientError::ConnectTimeout))?
            .map_err(|error| self.explain_connect_error(ClientError::Io(error)))?;
        stream.set_nodelay(true)?;
        let stream = tokio::time::timeout(options.connect_timeout, tls.connect(stream))
            .await
            .map_err(|_| anyhow!("the TLS handshake with {at} did not finish in time"))?
            .map_err(|error| anyhow!("TLS handshake with {at}: {error}{}", tls_hint(&error)))?;
        Client::connect_over(stream, options, config)
            .await
            .map_err(|error| self.explain_connect_error(error))
    }

    fn explain_connect_error(&self, error: ClientError) -> anyhow::Error {
        let at = self.address();
        match error {
            ClientError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => anyhow!(
                "could not connect to {at}: nothing is listening there; start a broker, or choose another with -h HOST and -p PORT"
            ),
            ClientError::Io(io) => anyhow!(
                "could not connect to {at}: {io}; check the host (-h), the port (-p) and the network"
            ),
            ClientError::Refused(connack) => {
                let hint = match connack.reason_code {
                    ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized => {
                        "; check the user name (-u) and password (-P)"
                    }
                    ReasonCode::UnsupportedProtocolVersion => {
                        "; try another protocol version with -V"
                    }
                    ReasonCode::ClientIdentifierNotValid => {
                        "; choose another client identifier with -i"
                    }
                    _ => "",
                };
                anyhow!("{at} refused the connection: {}{hint}", connack.reason_code)
            }
            ClientError::ConnectTimeout => anyhow!(
                "{at} did not accept the connection within 10 seconds; check that it is a plain MQTT listener"
            ),
            other => explain_end(other, &at),
        }
    }
}

/// Explains why an established connection ended badly.
pub fn explain_end(error: ClientError, at: &str) -> anyhow::Error {
    match error {
        ClientError::PingTimeout => {
            anyhow!("{at} stopped answering keep-alive pings; the broker or the network is down")
        }
        ClientError::ConnectionClosed => anyhow!("{at} closed the connection"),
        ClientError::Disconnected(reason) => anyhow!("{at} disconnected this client: {reason}"),
        ClientError::Protocol(error) => {
            anyhow!("{at} broke the MQTT protocol, so the connection was closed: {error}")
        }
        other => anyhow::Error::new(other).context(format!("the connection to {at} failed")),
    }
}

/// Waits for the connection task and explains a bad ending.
pub async fn finish(events: Events, at: &str) -> anyhow::Result<()> {
    events
        .finish()
        .await
        .map_err(|error| explain_end(error, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_mosquitto() {
        assert_eq!(parse_version("31"), Ok(ProtocolVersion::V3_1));
        assert_eq!(parse_version("mqttv311"), Ok(ProtocolVersion::V3_1_1));
        assert_eq!(parse_version("5"), Ok(ProtocolVersion::V5));
        assert!(parse_version("4").unwrap_err().contains("use 31, 311 or 5"));
    }

    #[test]
    fn default_identifiers_fit_mqtt_3_1() {
        let id = default_client_id("sub");
        assert!(id.starts_with("tern-sub-"));
        assert!(id.len() <= 23, "{id}");
    }
}
