//! `taskhost schedule …`.

use super::executions::Reach;
use super::*;

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
        #[command(flatten)]
        trigger: TriggerArgs,
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

pub(crate) async fn schedule(conn: Conn, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = SCHEDULE_COLUMNS;
    let value = match command {
        ScheduleCommand::Create {
            name,
            plugin,
            trigger,
            input,
            secrets,
            reach,
        } => create(&client, name, plugin, trigger, input, secrets, reach).await?,
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

/// When a new schedule fires: --cron, --every, --once or --event (or none:
/// manual).
#[derive(Debug, clap::Args)]
pub(crate) struct TriggerArgs {
    /// Cron expression (5 fields, or 6 with seconds first).
    #[arg(long, conflicts_with_all = ["every", "once", "event"])]
    cron: Option<String>,
    /// IANA time zone of --cron.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Fixed interval, e.g. 30s or 1h.
    #[arg(long, conflicts_with = "once", value_parser = taskhost_model::time::parse_duration)]
    every: Option<std::time::Duration>,
    /// One time, RFC 3339.
    #[arg(long, conflicts_with = "event")]
    once: Option<chrono::DateTime<chrono::Utc>>,
    /// When this event arrives (`taskhost event send`, or a hook).
    #[arg(long, conflicts_with = "every")]
    event: Option<String>,
    /// With --event: fields its data must have (JSON object).
    #[arg(long, requires = "event", value_parser = json_object)]
    filter: Option<Value>,
}

fn json_object(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("a filter is a JSON object, e.g. '{\"ref\": \"refs/heads/main\"}'".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

impl TriggerArgs {
    fn trigger(self) -> Trigger {
        match (self.cron, self.every, self.once) {
            (Some(expr), _, _) => Trigger::Cron {
                expr,
                timezone: self.timezone,
            },
            (_, Some(every), _) => Trigger::Interval {
                every,
                start_at: None,
            },
            (_, _, Some(at)) => Trigger::Once { at },
            _ => match self.event {
                Some(name) => Trigger::Event {
                    name,
                    filter: self.filter,
                },
                None => Trigger::Manual {},
            },
        }
    }
}

/// `schedule create`: a schedule of `plugin` (an id, or `NAME@LABEL`).
async fn create(
    client: &Client,
    name: String,
    plugin: String,
    trigger: TriggerArgs,
    input: String,
    secrets: Vec<String>,
    reach: Reach,
) -> anyhow::Result<Value> {
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
        trigger: trigger.trigger(),
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
        .await
}
