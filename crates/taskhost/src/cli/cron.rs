//! `taskhost cron next`: a cron expression's next fire times in its time
//! zone, as the server computes them (`GET /v1/cron/preview`).

use super::client::{Client, Conn, print};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CronCommand {
    /// The next fire times of EXPR, local and UTC; `*` marks a fire after a
    /// change of the zone's offset (daylight saving).
    ///
    /// Example: taskhost cron next '30 1 * * *' --timezone Europe/London --count 5
    Next {
        /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
        expr: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// How many (1-100).
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Start after this time (RFC 3339; default now).
        #[arg(long)]
        after: Option<String>,
    },
}

const COLUMNS: (&[&str], &[&str]) = (&["local", "utc", "dst"], &["/local", "/utc", "/change"]);

pub(crate) async fn cron(conn: Conn, command: CronCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let CronCommand::Next {
        expr,
        timezone,
        count,
        after,
    } = command;
    let mut query = vec![
        ("expr", expr),
        ("timezone", timezone),
        ("count", count.to_string()),
    ];
    query.extend(after.map(|a| ("after", a)));
    let request = client
        .http
        .get(client.url("/v1/cron/preview"))
        .query(&query);
    let preview = client.send(request).await?;
    if conn.json {
        return print(&conn, &preview, &[], &[]);
    }
    let items: Vec<Value> = preview["fires"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut f| {
            let change = if f["offset_changed"] == true { "*" } else { "" };
            f["change"] = json!(change);
            f
        })
        .collect();
    let (headers, fields) = COLUMNS;
    print(&conn, &json!({ "items": items }), headers, fields)
}
