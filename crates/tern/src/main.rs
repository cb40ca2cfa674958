//! `tern`: the command-line entry point of Tern, a clustered MQTT broker.
//!
//! This file only parses the command line and dispatches to one module per
//! subcommand. `tern serve` runs a broker node (tern-broker). `tern pub`
//! and `tern sub` are MQTT clients in the manner of
//! `mosquitto_pub` and `mosquitto_sub`, built on `tern-client`, the one
//! client implementation that the benchmark tool and the end-to-end tests
//! use too. Errors become `anyhow` errors here, at the edge, and are printed
//! with what went wrong and what to do about it.

mod bench;
mod cluster;
mod connection;
mod format;
mod passwd;
mod properties;
mod publish;
mod serve;
mod subscribe;
mod tls;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tern, a clustered MQTT broker, and its command-line clients.
#[derive(Debug, Parser)]
#[command(name = "tern", version, propagate_version = false)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker node (single node; data in ./tern-data by default).
    Serve(serve::ServeArgs),
    /// Publish messages to a broker, like mosquitto_pub.
    Pub(publish::PubArgs),
    /// Subscribe to topics and print the messages, like mosquitto_sub.
    Sub(subscribe::SubArgs),
    /// Load-test a broker (emqtt-bench style): connections, throughput, latency, losses.
    Bench(bench::BenchArgs),
    /// Operate a cluster through a node's admin API: status, join, leave, transfer-leader.
    Cluster(cluster::ClusterArgs),
    /// Add, change or delete a user of a password file, like mosquitto_passwd.
    Passwd(passwd::PasswdArgs),
}

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Pub(args) => run_client(publish::run(args)),
        Command::Sub(args) => run_client(subscribe::run(args)),
        Command::Bench(args) => bench::run_command(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Passwd(args) => passwd::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tern: error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause that an
/// outer message already quotes (library errors often include their source).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Runs a client subcommand on a single-threaded runtime: a client has one
/// connection and needs no more.
fn run_client(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow::anyhow!("could not start the async runtime: {error}"))?;
    runtime.block_on(command)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::other("disk full");
        let error = anyhow::Error::new(io).context("cannot write: disk full; free some space");
        assert_eq!(describe(&error), "cannot write: disk full; free some space");
        let error = anyhow::Error::new(std::io::Error::other("denied")).context("cannot open FILE");
        assert_eq!(describe(&error), "cannot open FILE: denied");
    }
}
