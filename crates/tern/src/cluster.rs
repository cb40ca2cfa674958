//! `tern cluster`: operate a cluster through a node's admin API (HTTP,
//! JSON; see tern-broker's `server::admin`).
//!
//! ```text
//! tern cluster status          --admin 127.0.0.1:8081
//! tern cluster join 4 127.0.0.4:7000 --admin 127.0.0.1:8081
//! tern cluster leave 4         --admin 127.0.0.1:8081
//! tern cluster transfer-leader 2 --admin 127.0.0.1:8081
//! ```

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Flags of `tern cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// A node's admin API address (its --admin-listen).
    #[arg(
        long,
        env = "TERN_ADMIN",
        value_name = "ADDR",
        global = true,
        default_value = "127.0.0.1:8081"
    )]
    admin: String,
    /// Print the node's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// The leader, the term, every member and its applied index.
    Status,
    /// Add a node to the cluster (a learner, then a voter while voters are short).
    Join {
        /// The new node's id.
        node_id: u64,
        /// The new node's cluster address (its --cluster-listen or --advertise).
        cluster_addr: String,
        /// The new node's MQTT address, for status output.
        #[arg(long, default_value = "")]
        mqtt_addr: String,
        /// The new node's admin address, for status output.
        #[arg(long, default_value = "")]
        admin_addr: String,
    },
    /// Remove a node from the cluster.
    Leave {
        /// The node to remove.
        node_id: u64,
    },
    /// Move the leadership to another voter.
    TransferLeader {
        /// The voter to lead.
        node_id: u64,
    },
}

/// Runs `tern cluster`.
pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(execute(args))
}

async fn execute(args: ClusterArgs) -> anyhow::Result<()> {
    let (path, body) = match &args.action {
        Action::Status => ("/cluster/status", None),
        Action::Join {
            node_id,
            cluster_addr,
            mqtt_addr,
            admin_addr,
        } => (
            "/cluster/join",
            Some(json!({
                "node_id": node_id,
                "cluster_addr": cluster_addr,
                "mqtt_addr": mqtt_addr,
                "admin_addr": admin_addr,
            })),
        ),
        Action::Leave { node_id } => ("/cluster/leave", Some(json!({ "node_id": node_id }))),
        Action::TransferLeader { node_id } => (
            "/cluster/transfer-leader",
            Some(json!({ "node_id": node_id })),
        ),
    };
    let answer = call(&args.admin, path, body).await?;
    if args.json || !matches!(args.action, Action::Status) {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", status_table(&answer));
    }
    Ok(())
}

/// One request to the admin API; a non-2xx answer is an error with the
/// node's explanation.
async fn call(admin: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let stream = TcpStream::connect(admin).await.with_context(|| {
        format!(
            "cannot reach the admin API at {admin}: check --admin and the node's --admin-listen"
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("{admin} does not speak HTTP: is it an admin address?"))?;
    tokio::spawn(connection);
    let builder = Request::builder()
        .uri(path)
        .header(hyper::header::HOST, admin)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    let request = match body {
        Some(body) => builder
            .method("POST")
            .body(Full::new(Bytes::from(body.to_string())))?,
        None => builder.method("GET").body(Full::new(Bytes::new()))?,
    };
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("the request to {admin}{path} failed"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_owned()));
    if !status.is_success() {
        let reason = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        bail!("{admin} answered {status}: {reason}");
    }
    Ok(value)
}

/// `status` as a table, one line per member.
fn status_table(status: &Value) -> String {
    let local = &status["local"];
    let text = |value: &Value| match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut out = format!(
        "leader: {}   term: {}   answered by: node {}\n",
        text(&local["leader"]),
        text(&local["term"]),
        text(&local["id"])
    );
    out.push_str(&format!(
        "{:<6}{:<11}{:<7}{:<10}{:<10}{:<7}{:<24}{:<24}{}\n",
        "NODE", "ROLE", "TERM", "APPLIED", "LOG", "VOTER", "CLUSTER", "MQTT", "STATE"
    ));
    for member in status["members"].as_array().into_iter().flatten() {
        let own = &member["status"];
        let state = if own.is_null() {
            format!("unreachable: {}", text(&member["unreachable"]))
        } else if own["ready"].as_bool() == Some(true) {
            "ready".to_owned()
        } else {
            format!("not ready {}", text(&own["problem"]))
        };
        out.push_str(&format!(
            "{:<6}{:<11}{:<7}{:<10}{:<10}{:<7}{:<24}{:<24}{}\n",
            text(&member["id"]),
            text(&own["role"]),
            text(&own["term"]),
            text(&own["last_applied"]),
            text(&own["last_log_index"]),
            if member["voter"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            text(&member["info"]["cluster_addr"]),
            text(&member["info"]["mqtt_addr"]),
            state
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_line_per_member_with_its_applied_index() {
        let status = json!({
            "local": {"id": 1, "leader": 1, "term": 3},
            "members": [
                {"id": 1, "voter": true, "info": {"cluster_addr": "127.0.0.1:7001", "mqtt_addr": "127.0.0.1:1883"},
                 "status": {"role": "leader", "term": 3, "last_applied": 42, "last_log_index": 42, "ready": true}},
                {"id": 4, "voter": false, "info": {"cluster_addr": "127.0.0.4:7001", "mqtt_addr": ""},
                 "status": null, "unreachable": "connection refused"}
            ]
        });
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("leader: 1") && lines[0].contains("term: 3"));
        assert!(
            lines[2].starts_with("1 ") && lines[2].contains("leader") && lines[2].contains("42")
        );
        assert!(lines[3].contains("unreachable: connection refused"));
    }
}
