//! Client commands against a running server: `plugin`, `schedule`, `exec`, `node`.
//! Human-readable tables by default, the API's JSON with `--json`.

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

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PluginCommand {
    /// Upload a plugin version.
    Push {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
    },
    /// List plugins.
    List,
    /// Point an alias (e.g. stable) at a version: schedules following
    /// NAME@ALIAS run it from their next fire.
    Alias {
        /// The plugin's name.
        name: String,
        /// The alias, e.g. stable (not latest: that is always the newest).
        alias: String,
        /// The version it should point to.
        #[arg(id = "plugin_version", value_name = "VERSION")]
        version: String,
    },
}

// Parsed once per command: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Create a schedule: give --cron, --every or --once (or none: manual).
    Create {
        #[arg(long)]
        name: String,
        /// The plugin: its id, NAME@VERSION (pinned), or NAME@latest /
        /// NAME@ALIAS (followed: each fire runs where the alias points then).
        #[arg(long)]
        plugin: String,
        /// Cron expression (5 fields, or 6 with seconds first).
        #[arg(long, conflicts_with_all = ["every", "once"])]
        cron: Option<String>,
        /// IANA time zone of --cron.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Fixed interval, e.g. 30s or 1h.
        #[arg(long, conflicts_with = "once", value_parser = taskhost_model::time::parse_duration)]
        every: Option<std::time::Duration>,
        /// One time, RFC 3339.
        #[arg(long)]
        once: Option<chrono::DateTime<chrono::Utc>>,
        /// Input JSON for every run.
        #[arg(long, default_value = "null")]
        input: String,
        /// A secret its runs may read (repeat for more).
        #[arg(long = "secret", value_name = "NAME")]
        secrets: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// List schedules.
    List,
    /// Pause a schedule.
    Pause { id: String },
    /// Resume a schedule.
    Resume { id: String },
    /// Run a schedule once now.
    Trigger { id: String },
    /// A schedule's fire ledger: every fire time and what became of it.
    History {
        /// The schedule's id.
        id: String,
        /// Fires at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Fires before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Only this fate: ran, caught_up, backfilled, skipped, missed.
        #[arg(long)]
        fate: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Run the fires of a past window that have not run (at most 1,000).
    Backfill {
        /// The schedule's id.
        id: String,
        /// The window's start, RFC 3339 (included).
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// The window's end, RFC 3339 (excluded; at most now).
        #[arg(long)]
        to: chrono::DateTime<chrono::Utc>,
    },
}

/// What a schedule's or run's plugin may call, and whom to tell when it ends.
#[derive(Debug, clap::Args)]
pub(crate) struct Reach {
    /// A host the plugin may call over HTTP (repeat for more):
    /// api.example.com, *.example.com:443, or * for any.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,
    /// A webhook to call when a run ends (repeat for more).
    #[arg(long = "notify", value_name = "URL")]
    notify: Vec<String>,
    /// The ends the webhooks report, e.g. failed,dead,timed_out (default: every end).
    #[arg(long = "notify-on", value_name = "EVENTS", value_delimiter = ',')]
    notify_on: Vec<String>,
}

impl Reach {
    /// Sets `network` and `notify` of a run policy.
    fn apply(self, policy: &mut RunPolicy) {
        if !self.allow_hosts.is_empty() {
            policy.network = Some(NetworkGrant {
                allow: self.allow_hosts,
            });
        }
        let on = self.notify_on;
        policy.notify = self
            .notify
            .into_iter()
            .map(|url| NotifyTarget {
                url,
                on: on.clone(),
            })
            .collect();
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCommand {
    /// List the live nodes (admin scope).
    List,
    /// Drain a node: it claims nothing more and finishes its runs (admin scope).
    Drain { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ExecCommand {
    /// Submit an ad hoc run of a plugin.
    Submit {
        plugin_id: String,
        /// The run's input, as JSON.
        #[arg(long)]
        input: Option<String>,
        /// -100 to 100; higher runs first.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Wait this long (e.g. 10s) for the result.
        #[arg(long, value_parser = taskhost_model::time::parse_duration)]
        wait: Option<std::time::Duration>,
        /// A secret the run may read (repeat for more).
        #[arg(long = "secret", value_name = "NAME")]
        secrets: Vec<String>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Submit up to 1,000 runs at once, all or none: FILE ("-" for stdin)
    /// holds a JSON array of runs as `submit` sends them (`plugin_id`,
    /// `input`, `priority`, `limits`, `retry`…), or one such object per line.
    /// Prints the new executions' ids.
    SubmitBatch { file: PathBuf },
    /// List executions, newest first.
    List {
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one execution.
    Get { id: String },
    /// Print an execution's logs, stdout and stderr.
    Logs { id: String },
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

pub(crate) async fn node(conn: Conn, command: NodeCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = NODE_COLUMNS;
    let answer = match command {
        NodeCommand::List => {
            let nodes = client.get("/v1/nodes").await?;
            json!({ "items": nodes })
        }
        NodeCommand::Drain { id } => client.post(&format!("/v1/nodes/{id}/drain"), None).await?,
    };
    if conn.json {
        let value = answer.get("items").cloned().unwrap_or(answer);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&conn, &answer, headers, fields)
}

pub(crate) async fn plugin(conn: Conn, command: PluginCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = PLUGIN_COLUMNS;
    match command {
        PluginCommand::Push {
            file,
            name,
            version,
        } => {
            let wasm = std::fs::read(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let url = client.url("/v1/plugins");
            let request = client
                .http
                .post(url)
                .query(&[("name", name), ("version", version)])
                .body(wasm);
            print(&conn, &client.send(request).await?, headers, fields)
        }
        PluginCommand::List => print(&conn, &client.get("/v1/plugins").await?, headers, fields),
        PluginCommand::Alias {
            name,
            alias,
            version,
        } => {
            let path = format!("/v1/plugins/{name}/aliases/{alias}");
            let moved = client
                .post(&path, Some(json!({"version": version})))
                .await?;
            let (headers, fields) = ALIAS_COLUMNS;
            print(&conn, &moved, headers, fields)
        }
    }
}

pub(crate) async fn schedule(conn: Conn, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = SCHEDULE_COLUMNS;
    let value = match command {
        ScheduleCommand::Create {
            name,
            plugin,
            cron,
            timezone,
            every,
            once,
            input,
            secrets,
            reach,
        } => {
            let trigger = match (cron, every, once) {
                (Some(expr), _, _) => Trigger::Cron { expr, timezone },
                (_, Some(every), _) => Trigger::Interval {
                    every,
                    start_at: None,
                },
                (_, _, Some(at)) => Trigger::Once { at },
                _ => Trigger::Manual {},
            };
            let input: Value = serde_json::from_str(&input).context("--input is not valid JSON")?;
            let (plugin_id, plugin) = match plugin.contains('@') {
                true => (None, Some(plugin)),
                false => (Some(plugin), None),
            };
            let mut policy = RunPolicy {
                input,
                secrets,
                ..RunPolicy::default()
            };
            reach.apply(&mut policy);
            let body = NewSchedule {
                name,
                plugin_id,
                plugin,
                trigger,
                overlap: Default::default(),
                catch_up: Default::default(),
                jitter: None,
                paused: false,
                starts_at: None,
                ends_at: None,
                policy,
                other: NoOtherFields,
            };
            client
                .post("/v1/schedules", Some(serde_json::to_value(&body)?))
                .await?
        }
        ScheduleCommand::List => client.get("/v1/schedules").await?,
        ScheduleCommand::Pause { id } => {
            client
                .post(&format!("/v1/schedules/{id}/pause"), None)
                .await?
        }
        ScheduleCommand::Resume { id } => {
            client
                .post(&format!("/v1/schedules/{id}/resume"), None)
                .await?
        }
        ScheduleCommand::Trigger { id } => {
            let execution = client
                .post(&format!("/v1/schedules/{id}/trigger"), None)
                .await?;
            let (headers, fields) = EXEC_COLUMNS;
            return print(&conn, &execution, headers, fields);
        }
        ScheduleCommand::History {
            id,
            since,
            until,
            fate,
            limit,
        } => {
            let mut query = vec![("limit".to_owned(), limit.to_string())];
            query.extend(since.map(|v| ("since".to_owned(), v)));
            query.extend(until.map(|v| ("until".to_owned(), v)));
            query.extend(fate.map(|v| ("fate".to_owned(), v)));
            let url = client.url(&format!("/v1/schedules/{id}/fires"));
            let fires = client.send(client.http.get(url).query(&query)).await?;
            let (headers, fields) = FIRE_COLUMNS;
            return print(&conn, &fires, headers, fields);
        }
        ScheduleCommand::Backfill { id, from, to } => {
            let body = BackfillRequest {
                from,
                to,
                overlap: None,
            };
            let body = serde_json::to_value(&body)?;
            let path = format!("/v1/schedules/{id}/backfill");
            let report = client.post(&path, Some(body)).await?;
            let (headers, fields) = BACKFILL_COLUMNS;
            return print(&conn, &report, headers, fields);
        }
    };
    print(&conn, &value, headers, fields)
}

pub(crate) async fn exec(conn: Conn, command: ExecCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = EXEC_COLUMNS;
    match command {
        ExecCommand::List {
            schedule,
            status,
            limit,
        } => {
            let mut query = vec![("limit".to_owned(), limit.to_string())];
            query.extend(schedule.map(|s| ("schedule_id".to_owned(), s)));
            query.extend(status.map(|s| ("status".to_owned(), s)));
            let request = client.http.get(client.url("/v1/executions")).query(&query);
            print(&conn, &client.send(request).await?, headers, fields)
        }
        ExecCommand::Submit {
            plugin_id,
            input,
            priority,
            wait,
            secrets,
            reach,
        } => {
            let input: Value = match input {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("--input is not JSON: {e}"))?,
                None => Value::Null,
            };
            let mut policy = RunPolicy {
                input,
                priority,
                secrets,
                ..RunPolicy::default()
            };
            reach.apply(&mut policy);
            let body = NewExecution {
                plugin_id,
                wait,
                policy,
                other: NoOtherFields,
            };
            let body = serde_json::to_value(&body)?;
            print(
                &conn,
                &client.post("/v1/executions", Some(body)).await?,
                headers,
                fields,
            )
        }
        ExecCommand::SubmitBatch { file } => {
            let runs = read_runs(&file)?;
            let accepted = client
                .post("/v1/executions/batch", Some(json!({ "runs": runs })))
                .await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&accepted)?);
            } else {
                for id in accepted["ids"].as_array().into_iter().flatten() {
                    println!("{}", text(id));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecCommand::Get { id } => print(
            &conn,
            &client.get(&format!("/v1/executions/{id}")).await?,
            headers,
            fields,
        ),
        ExecCommand::Logs { id } => {
            let execution = client.get(&format!("/v1/executions/{id}")).await?;
            let outcome = &execution["outcome"];
            if conn.json {
                let logs = json!({"logs": outcome["logs"], "stdout": outcome["stdout"], "stderr": outcome["stderr"]});
                println!("{}", serde_json::to_string_pretty(&logs)?);
                return Ok(ExitCode::SUCCESS);
            }
            for line in outcome["logs"].as_array().into_iter().flatten() {
                println!(
                    "{:>6}ms {:<5} {}",
                    text(&line["at_ms"]),
                    text(&line["level"]),
                    text(&line["message"])
                );
            }
            for stream in ["stdout", "stderr"] {
                if let Some(captured) = outcome[stream].as_str().filter(|s| !s.is_empty()) {
                    println!("--- {stream} ---\n{captured}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The runs of a batch file: a JSON array, or one JSON object per line.
fn read_runs(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("could not read {}: {e}", file.display()))?
    };
    if let Ok(Value::Array(runs)) = serde_json::from_str::<Value>(&text) {
        return Ok(runs);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                anyhow::anyhow!(
                    "{} line {}: not a JSON run ({e}); give a JSON array or one object per line",
                    file.display(),
                    i + 1
                )
            })
        })
        .collect()
}
