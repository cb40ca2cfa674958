//! `tern sub`: subscribe to topic filters and print each message on
//! standard output, in the manner of `mosquitto_sub`.
//!
//! Ends after `-C` messages, after `-W` seconds, at the first non-retained
//! message with `--retained-only`, or on Ctrl-C or SIGTERM, always with a
//! normal DISCONNECT (so the broker discards the will). Killed any other
//! way, it leaves the broker to publish its will.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, value_parser};
use tern_client::{Client, Event, Events};
use tern_codec::{Publish, RetainHandling, SubscriptionOptions, TopicFilter};
use tokio::io::AsyncWriteExt;

use crate::connection::{self, ConnectArgs};
use crate::format::OutputFormat;
use crate::properties::Properties;

/// The flags of `tern sub`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// Topic filter to subscribe to; repeat for more.
    #[arg(
        short = 't',
        long = "topic",
        value_name = "FILTER",
        required_unless_present = "unsubscribe"
    )]
    pub topics: Vec<String>,
    /// Maximum QoS of the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Exit after printing this many messages.
    #[arg(short = 'C', long, value_name = "COUNT", value_parser = value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit after this many seconds; an error if -C messages have not all arrived.
    #[arg(short = 'W', long, value_name = "SECONDS", value_parser = value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Print the topic before the payload: "topic payload".
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print each message with a format string: %t topic, %p payload, %q QoS,
    /// %r retain, %l length, %x hex payload, %P user properties, %% percent.
    #[arg(short = 'F', long, value_name = "FORMAT", conflicts_with = "verbose")]
    pub format: Option<String>,
    /// Do not end each message with a newline.
    #[arg(short = 'N', long = "no-newline")]
    pub no_newline: bool,
    /// Skip messages with the retain flag: print only new ones.
    #[arg(short = 'R', long = "no-retain")]
    pub no_retain: bool,
    /// Print only retained messages, and exit at the first message that is not.
    #[arg(long, conflicts_with = "no_retain")]
    pub retained_only: bool,
    /// Unsubscribe from this filter once subscribed (for cleaning up a
    /// persistent session); repeatable. Without -t, exit once done.
    #[arg(short = 'U', long, value_name = "FILTER")]
    pub unsubscribe: Vec<String>,
    /// Session expiry interval in seconds (MQTT 5). With -c and without -x
    /// the session never expires.
    #[arg(short = 'x', long = "session-expiry", value_name = "SECONDS")]
    pub session_expiry: Option<u32>,
    /// No local: do not receive this client's own messages (MQTT 5).
    #[arg(long = "nl")]
    pub no_local: bool,
    /// Retain as published: keep the retain flag of forwarded messages (MQTT 5).
    #[arg(long = "rap")]
    pub retain_as_published: bool,
    /// Retained messages on subscribing (MQTT 5): 0 always, 1 only for a
    /// new subscription, 2 never.
    #[arg(long, alias = "rh", value_name = "0|1|2", value_parser = value_parser!(u8).range(0..=2))]
    pub retain_handling: Option<u8>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl SubArgs {
    fn check_version(&self) -> anyhow::Result<()> {
        if self.connection.version.is_v5() {
            return Ok(());
        }
        let v5_only = [
            (self.no_local, "--nl"),
            (self.retain_as_published, "--rap"),
            (self.retain_handling.is_some(), "--retain-handling"),
            (self.session_expiry.is_some(), "-x"),
        ];
        if let Some((_, flag)) = v5_only.iter().find(|(used, _)| *used) {
            bail!("{flag} exists only in MQTT 5: add -V 5");
        }
        Ok(())
    }

    fn subscriptions(&self) -> anyhow::Result<Vec<(TopicFilter, SubscriptionOptions)>> {
        let options = SubscriptionOptions {
            qos: connection::qos(self.qos),
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: match self.retain_handling {
                None | Some(0) => RetainHandling::SendAtSubscribe,
                Some(1) => RetainHandling::SendIfNewSubscription,
                Some(_) => RetainHandling::DoNotSend,
            },
        };
        self.topics
            .iter()
            .map(|topic| Ok((filter(topic)?, options)))
            .collect()
    }

    fn output_format(&self) -> OutputFormat {
        match (&self.format, self.verbose) {
            (Some(format), _) => OutputFormat::Custom(format.clone()),
            (None, true) => OutputFormat::TopicAndPayload,
            (None, false) => OutputFormat::Payload,
        }
    }
}

fn filter(text: &str) -> anyhow::Result<TopicFilter> {
    TopicFilter::new(text).map_err(|error| anyhow!("invalid topic filter {text:?}: {error}"))
}

/// Runs `tern sub`.
pub async fn run(args: SubArgs) -> anyhow::Result<()> {
    let mut stop = StopSignals::install()?;
    args.check_version()?;
    let properties = args.connection.parse_properties()?;
    let mut plan = Plan {
        subscriptions: args.subscriptions()?,
        unsubscriptions: args
            .unsubscribe
            .iter()
            .map(|text| filter(text))
            .collect::<Result<_, _>>()?,
        properties,
    };
    let mut options = args.connection.connect_options("sub", &plan.properties)?;
    if options.protocol.is_v5() {
        let never = args.connection.persistent.then_some(u32::MAX);
        let expiry = args
            .session_expiry
            .or(never)
            .or(options.properties.session_expiry_interval);
        options.properties.session_expiry_interval = expiry;
    }
    let at = args.connection.address();
    let (client, mut events) = args.connection.connect(options).await?;

    if plan.subscriptions.is_empty() {
        plan.unsubscribe(&client).await?;
    } else {
        let subscribe_properties = plan.properties.subscribe.clone();
        client
            .subscribe(plan.subscriptions.clone(), subscribe_properties)
            .await?;
    }
    let printer = Printer::new(&args);
    let outcome = receive(&args, &client, &mut events, &mut stop, printer, &mut plan).await;
    // Ending normally: say goodbye so that the broker discards the will.
    let goodbye = tern_codec::Disconnect {
        properties: plan.properties.disconnect,
        ..Default::default()
    };
    let _ = client.disconnect(goodbye).await;
    let ended = connection::finish(events, &at).await;
    outcome.and(ended)
}

/// What `tern sub` asks of the broker.
struct Plan {
    subscriptions: Vec<(TopicFilter, SubscriptionOptions)>,
    /// Filters to unsubscribe from once subscribed; emptied when sent.
    unsubscriptions: Vec<TopicFilter>,
    properties: Properties,
}

impl Plan {
    /// Sends the UNSUBSCRIBE of -U, once.
    async fn unsubscribe(&mut self, client: &Client) -> anyhow::Result<()> {
        if self.unsubscriptions.is_empty() {
            return Ok(());
        }
        let filters = std::mem::take(&mut self.unsubscriptions);
        client
            .unsubscribe(filters, self.properties.unsubscribe.clone())
            .await?;
        Ok(())
    }
}

/// Prints messages until one of the reasons to stop.
async fn receive(
    args: &SubArgs,
    client: &Client,
    events: &mut Events,
    stop: &mut StopSignals,
    mut printer: Printer,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let deadline = args
        .timeout
        .map(|seconds| tokio::time::Instant::now() + Duration::from_secs(seconds));
    let timeout = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(timeout);
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = &mut timeout, if deadline.is_some() => {
                return match args.count {
                    Some(count) => Err(anyhow!(
                        "timed out after {} s with {} of {count} messages received",
                        args.timeout.unwrap_or_default(),
                        printer.printed
                    )),
                    None => Ok(()),
                };
            }
            () = stop.recv() => return Ok(()),
        };
        match event {
            // The connection ended; finishing says why.
            None => return Ok(()),
            Some(Event::Subscribed { reason_codes, .. }) => {
                report_refusals(&plan.subscriptions, &reason_codes)?;
                plan.unsubscribe(client).await?;
            }
            Some(Event::Unsubscribed { .. }) if plan.subscriptions.is_empty() => return Ok(()),
            Some(Event::Message(message)) => {
                if args.retained_only && !message.retain {
                    return Ok(());
                }
                if args.no_retain && message.retain {
                    continue;
                }
                if !printer.print(&message).await? {
                    return Ok(());
                }
                if args.count.is_some_and(|count| printer.printed >= count) {
                    return Ok(());
                }
            }
            Some(_) => {}
        }
    }
}

/// Warns about refused subscriptions; an error if all were refused.
fn report_refusals(
    subscriptions: &[(TopicFilter, SubscriptionOptions)],
    reason_codes: &[tern_codec::ReasonCode],
) -> anyhow::Result<()> {
    let refused: Vec<_> = subscriptions
        .iter()
        .zip(reason_codes)
        .filter(|(_, code)| !code.is_success())
        .collect();
    if !refused.is_empty() && refused.len() == subscriptions.len() {
        let ((filter, _), reason) = refused[0];
        bail!(
            "the broker refused every subscription, {filter:?} with {reason}; check the filters and this user's permissions"
        );
    }
    for ((filter, _), reason) in refused {
        eprintln!("tern: warning: the broker refused the subscription to {filter:?}: {reason}");
    }
    Ok(())
}

/// Ctrl-C and SIGTERM, caught from the start so that `tern sub` always
/// disconnects cleanly when asked to stop.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind| {
            signal(kind).map_err(|error| anyhow!("cannot catch Ctrl-C and SIGTERM: {error}"))
        };
        Ok(Self {
            interrupt: catch(SignalKind::interrupt())?,
            terminate: catch(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// Completes when a stop signal arrives. Cancel safe.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Writes messages to standard output, one flush per message so that a
/// reader of a pipe sees each as it arrives.
struct Printer {
    format: OutputFormat,
    newline: bool,
    stdout: tokio::io::Stdout,
    buffer: Vec<u8>,
    printed: u64,
}

impl Printer {
    fn new(args: &SubArgs) -> Self {
        Self {
            format: args.output_format(),
            newline: !args.no_newline,
            stdout: tokio::io::stdout(),
            buffer: Vec::new(),
            printed: 0,
        }
    }

    /// Prints a message; false if standard output is closed (a reader such
    /// as `head` has had enough), which ends `tern sub` normally.
    async fn print(&mut self, message: &Publish) -> anyhow::Result<bool> {
        self.buffer.clear();
        self.format.render(message, self.newline, &mut self.buffer);
        let written = async {
            self.stdout.write_all(&self.buffer).await?;
            self.stdout.flush().await
        };
        match written.await {
            Ok(()) => {
                self.printed += 1;
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(anyhow!("could not write to standard output: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SubArgs,
    }

    fn parse(line: &[&str]) -> Result<SubArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("sub").chain(line.iter().copied())).map(|cli| cli.args)
    }

    #[test]
    fn topics_repeat_and_options_apply_to_each() {
        let args = parse(&[
            "-t", "a/#", "-t", "b/+", "-q", "1", "-V", "5", "--nl", "--rap", "--rh", "2", "-C",
            "3", "-W", "9", "-v",
        ])
        .unwrap();
        args.check_version().unwrap();
        let subscriptions = args.subscriptions().unwrap();
        assert_eq!(subscriptions.len(), 2);
        let (_, options) = subscriptions[1];
        assert!(options.no_local && options.retain_as_published);
        assert_eq!(options.retain_handling, RetainHandling::DoNotSend);
        assert_eq!((args.count, args.timeout), (Some(3), Some(9)));
        assert_eq!(args.output_format(), OutputFormat::TopicAndPayload);
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        assert!(parse(&["-q", "1"]).is_err(), "a topic is required");
        assert!(parse(&["-U", "a"]).is_ok(), "-U alone is allowed");
        assert!(parse(&["-t", "a", "-v", "-F", "%t"]).is_err());
        let error = parse(&["-t", "a", "--nl"])
            .unwrap()
            .check_version()
            .unwrap_err();
        assert!(
            error.to_string().contains("--nl exists only in MQTT 5"),
            "{error}"
        );
        let error = parse(&["-t", "a/#/b"])
            .unwrap()
            .subscriptions()
            .unwrap_err();
        assert!(
            error.to_string().contains("invalid topic filter"),
            "{error}"
        );
    }
}
