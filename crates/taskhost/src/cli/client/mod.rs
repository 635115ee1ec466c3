//! Client commands against a running server: `plugin`, `schedule`, `exec`,
//! `event`, `hook`, `node`.
//! Human-readable tables by default, the API's JSON with `--json`.

mod apikeys;
mod events;
mod executions;
mod flow;
mod plugins;
mod schedules;

pub(crate) use apikeys::{ApiKeyCommand, api_key};
pub(crate) use events::{EventCommand, HookCommand, event, hook};
pub(crate) use executions::{ExecCommand, exec};
pub(crate) use plugins::{NodeCommand, PluginCommand, node, plugin};
pub(crate) use schedules::{ScheduleCommand, schedule};

use crate::api::wire::{BackfillRequest, NewExecution, NewSchedule, NoOtherFields};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use taskhost_model::{NotifyTarget, RunPolicy, Trigger};
use taskhost_net::NetworkGrant;

/// Where the server is and who is calling.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Conn {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "TASKHOST_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// A PEM file of CA certificates to trust besides the system's (for a
    /// server whose certificate a private CA signed).
    #[arg(long, global = true, env = "TASKHOST_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// An API token (see `taskhost token`, or the one `serve` prints).
    #[arg(long, global = true, env = "TASKHOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    conn: Conn,
}

impl Client {
    pub(crate) fn new(conn: Conn) -> anyhow::Result<Client> {
        Ok(Client {
            http: crate::tls::http_client(conn.ca_cert.as_deref())?,
            conn,
        })
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let request = match &self.conn.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => match crate::tls::explain(&e) {
                Some(why) => bail!("could not reach {}: {why}", self.conn.server),
                None => {
                    return Err(e).with_context(|| format!("could not reach {}", self.conn.server));
                }
            },
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no details");
            bail!("{status}: {message}");
        }
        Ok(body)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.server.trim_end_matches('/'))
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let request = self.http.post(self.url(path));
        self.send(match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

pub(crate) fn print(
    conn: &Conn,
    value: &Value,
    headers: &[&str],
    fields: &[&str],
) -> anyhow::Result<ExitCode> {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let items = match value.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![value.clone()],
    };
    let rows = items.iter().map(|item| {
        fields
            .iter()
            .map(|f| text(&item.pointer(f).cloned().unwrap_or(Value::Null)))
            .collect()
    });
    table(headers, rows.collect());
    Ok(ExitCode::SUCCESS)
}

const PLUGIN_COLUMNS: (&[&str], &[&str]) = (
    &["id", "name", "version", "size", "created"],
    &["/id", "/name", "/version", "/size", "/created_at"],
);

const SCHEDULE_COLUMNS: (&[&str], &[&str]) = (
    &["id", "name", "trigger", "paused", "next fire"],
    &["/id", "/name", "/trigger/kind", "/paused", "/next_fire_at"],
);

const FIRE_COLUMNS: (&[&str], &[&str]) = (
    &["fire (utc)", "fate", "reason", "execution", "status"],
    &["/fire_at", "/fate", "/reason", "/execution_id", "/status"],
);

const BACKFILL_COLUMNS: (&[&str], &[&str]) = (
    &["fires", "already ran", "was skipped", "outside bounds"],
    &["/fires", "/already_ran", "/was_skipped", "/outside_bounds"],
);

const ALIAS_COLUMNS: (&[&str], &[&str]) = (
    &["name", "alias", "version", "plugin id"],
    &["/name", "/alias", "/version", "/plugin_id"],
);

const EXEC_COLUMNS: (&[&str], &[&str]) = (
    &["id", "status", "run", "attempt", "created", "error"],
    &[
        "/id",
        "/status",
        "/outcome/status",
        "/attempt",
        "/created_at",
        "/outcome/error/message",
    ],
);

const NODE_COLUMNS: (&[&str], &[&str]) = (
    &[
        "id",
        "role",
        "version",
        "workers",
        "in flight",
        "draining",
        "last seen",
    ],
    &[
        "/id",
        "/role",
        "/version",
        "/workers",
        "/in_flight",
        "/draining",
        "/last_seen",
    ],
);
