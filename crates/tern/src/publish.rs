//! `tern pub`: publish one message, a repeated message, or one message per
//! line of standard input, in the manner of `mosquitto_pub`.
//!
//! Exits with 0 only when every QoS 1 and 2 message was acknowledged with a
//! success reason code; otherwise it says how many were not, and why.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{ArgGroup, Args, value_parser};
use tern_client::{Client, ClientError, Event};
use tern_codec::topic::validate_topic_name;
use tern_codec::{Publish, QoS, ReasonCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::connection::{self, ConnectArgs};

/// The flags of `tern pub`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
#[command(group(ArgGroup::new("payload").required(true)
    .args(["message", "file", "stdin_file", "stdin_line", "null_message"])))]
pub struct PubArgs {
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// Topic to publish to.
    #[arg(short = 't', long)]
    pub topic: String,
    /// Send this text as the message.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Send the whole of standard input as one message.
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,
    /// Send each line of standard input as a message (without its newline).
    #[arg(short = 'l', long = "stdin-line")]
    pub stdin_line: bool,
    /// Send an empty message (with -r, this clears a retained message).
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Ask the broker to retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// Send the message this many times.
    #[arg(long, value_name = "COUNT", default_value_t = 1, conflicts_with = "stdin_line",
          value_parser = value_parser!(u64).range(1..))]
    pub repeat: u64,
    /// Seconds to wait between repeated messages (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds)]
    pub repeat_delay: Duration,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Parses a non-negative number of seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds (such as 0.5 or 2)"))
}

/// Where the messages come from.
enum Source {
    /// One payload, sent `--repeat` times.
    Once(Bytes),
    /// Standard input, one message per line.
    Lines,
}

/// Runs `tern pub`.
pub async fn run(args: PubArgs) -> anyhow::Result<()> {
    validate_topic_name(&args.topic)
        .map_err(|error| anyhow!("invalid topic {:?}: {error}", args.topic))?;
    let properties = args.connection.parse_properties()?;
    let options = args.connection.connect_options("pub", &properties)?;
    let source = read_source(&args).await?;

    let mut template = Publish::new(args.topic.as_str(), Bytes::new());
    template.qos = connection::qos(args.qos);
    template.retain = args.retain;
    template.set_properties(properties.publish);

    let at = args.connection.address();
    let (client, mut events) = args.connection.connect(options).await?;
    let publishing = publish_all(&client, &args, template, source);
    tokio::pin!(publishing);

    // Publish and collect acknowledgments at once: the driver stops taking
    // messages while acknowledgments wait to be read.
    let mut sent = None;
    let mut acknowledged = 0;
    let mut refusals = Vec::new();
    let mut disconnecting = false;
    loop {
        let all_acknowledged = sent.is_some_and(|sent| args.qos == 0 || acknowledged == sent);
        if all_acknowledged && !disconnecting {
            disconnecting = true;
            if client.disconnect_normally().await.is_err() {
                break;
            }
        }
        tokio::select! {
            result = &mut publishing, if sent.is_none() => sent = Some(result?),
            event = events.recv() => match event {
                Some(Event::PublishCompleted { reason, .. }) => {
                    acknowledged += 1;
                    if !reason.is_success() {
                        refusals.push(reason);
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    let ended = connection::finish(events, &at).await;
    if let Err(error) = ended {
        let progress = match sent {
            _ if args.qos == 0 => return Err(error),
            Some(sent) => format!(
                "{acknowledged} of {sent} messages were acknowledged before the connection ended"
            ),
            None => format!(
                "the connection ended while publishing, after {acknowledged} acknowledged messages"
            ),
        };
        return Err(error.context(progress));
    }
    let sent = sent.unwrap_or(0);
    if let Some(reason) = refusals.first() {
        bail!(
            "{} of {sent} messages were refused by {at}, the first with {reason}{}",
            refusals.len(),
            refusal_hint(*reason)
        );
    }
    Ok(())
}

/// Reads the payload of -m, -f, -s or -n now, so that a missing file is
/// reported before connecting.
async fn read_source(args: &PubArgs) -> anyhow::Result<Source> {
    if let Some(message) = &args.message {
        return Ok(Source::Once(Bytes::from(message.clone())));
    }
    if let Some(path) = &args.file {
        let contents = std::fs::read(path)
            .with_context(|| format!("could not read the message file {}", path.display()))?;
        return Ok(Source::Once(Bytes::from(contents)));
    }
    if args.stdin_file {
        let mut contents = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut contents)
            .await
            .context("could not read the message from standard input")?;
        return Ok(Source::Once(Bytes::from(contents)));
    }
    if args.stdin_line {
        return Ok(Source::Lines);
    }
    Ok(Source::Once(Bytes::new()))
}

/// Publishes every message; returns how many were sent.
async fn publish_all(
    client: &Client,
    args: &PubArgs,
    template: Publish,
    source: Source,
) -> anyhow::Result<u64> {
    match source {
        Source::Once(payload) => {
            for round in 0..args.repeat {
                if round > 0 && !args.repeat_delay.is_zero() {
                    tokio::time::sleep(args.repeat_delay).await;
                }
                let mut message = template.clone();
                message.payload = payload.clone();
                publish(client, message).await?;
            }
            Ok(args.repeat)
        }
        Source::Lines => {
            let mut stdin = BufReader::new(tokio::io::stdin());
            let mut line = Vec::new();
            let mut sent = 0;
            loop {
                line.clear();
                let read = stdin
                    .read_until(b'\n', &mut line)
                    .await
                    .context("could not read standard input")?;
                if read == 0 {
                    return Ok(sent);
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let mut message = template.clone();
                message.payload = Bytes::copy_from_slice(&line);
                publish(client, message).await?;
                sent += 1;
            }
        }
    }
}

async fn publish(client: &Client, message: Publish) -> anyhow::Result<()> {
    let qos = message.qos;
    match client.publish(message).await {
        Ok(_) => Ok(()),
        Err(ClientError::Command(error)) => {
            let hint = match qos {
                QoS::AtMostOnce => "",
                _ => "; lower the QoS with -q if the broker limits it",
            };
            Err(anyhow!("the message cannot be published: {error}{hint}"))
        }
        Err(error) => Err(anyhow!("the message cannot be published: {error}")),
    }
}

fn refusal_hint(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::NotAuthorized => "; check that this user may publish to the topic",
        ReasonCode::QuotaExceeded | ReasonCode::ImplementationSpecificError => {
            "; see the broker's log"
        }
        ReasonCode::PayloadFormatInvalid => "; the payload does not match its format indicator",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: PubArgs,
    }

    fn parse(line: &[&str]) -> Result<PubArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("pub").chain(line.iter().copied())).map(|cli| cli.args)
    }

    #[test]
    fn mosquitto_style_flags_parse() {
        let args = parse(&[
            "-h",
            "broker",
            "-p",
            "1884",
            "-t",
            "a/b",
            "-m",
            "hi",
            "-q",
            "2",
            "-r",
            "-V",
            "5",
            "-i",
            "me",
            "-u",
            "user",
            "-P",
            "pw",
            "-k",
            "30",
            "-c",
            "--repeat",
            "3",
            "--repeat-delay",
            "0.5",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-d",
        ])
        .unwrap();
        assert_eq!(args.connection.address(), "broker:1884");
        assert_eq!((args.qos, args.retain, args.repeat), (2, true, 3));
        assert_eq!(args.repeat_delay, Duration::from_millis(500));
        assert_eq!(
            args.connection.properties.0,
            [["publish", "user-property", "k", "v"]]
        );
        let options = args
            .connection
            .connect_options("pub", &args.connection.parse_properties().unwrap())
            .unwrap();
        assert_eq!((options.keep_alive, options.clean_start), (30, false));
        assert_eq!(options.client_id, "me");
    }

    #[test]
    fn exactly_one_payload_source_is_required() {
        assert!(parse(&["-t", "a"]).is_err());
        assert!(parse(&["-t", "a", "-m", "x", "-n"]).is_err());
        assert!(parse(&["-t", "a", "-l", "--repeat", "2"]).is_err());
        assert!(parse(&["-t", "a", "-m", "x", "-q", "3"]).is_err());
    }

    #[test]
    fn version_specific_mistakes_are_explained() {
        let args = parse(&["-t", "a", "-m", "x", "-D", "publish", "content-type", "t"]).unwrap();
        let error = args.connection.parse_properties().unwrap_err();
        assert!(error.to_string().contains("add -V 5"), "{error}");

        let args = parse(&["-t", "a", "-m", "x", "-c"]).unwrap();
        let error = args
            .connection
            .connect_options("pub", &Default::default())
            .unwrap_err();
        assert!(error.to_string().contains("add -i ID"), "{error}");

        assert!(parse(&["-t", "a", "-m", "x", "--will-qos", "1"]).is_err());
    }
}
