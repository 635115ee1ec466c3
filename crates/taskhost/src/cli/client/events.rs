//! `taskhost event send` and `taskhost hook …`: events, and the public
//! endpoints that send them (see `POST /v1/events` and `/v1/hooks`).

use super::*;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum EventCommand {
    /// Send an event: every schedule whose trigger is this event (and whose
    /// filter its data matches) fires once.
    Send {
        /// The event's name, e.g. github.push.
        name: String,
        /// Its data (JSON), given to the runs as input `data`.
        #[arg(long, default_value = "null")]
        data: String,
        /// Its id: an event with the id of one sent before fires nothing again.
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum HookCommand {
    /// Make a hook: a public endpoint whose verified requests become an
    /// event. Prints its secret, shown only now.
    Create {
        /// A label for people.
        #[arg(long)]
        name: String,
        /// The event its requests become.
        #[arg(long)]
        event: String,
        /// `signed` (Standard Webhooks signatures) or `token` (a bearer token).
        #[arg(long, default_value = "signed")]
        mode: String,
    },
    /// List the tenant's hooks (never their secrets).
    List,
    /// Give a hook a new secret (the old one verifies 24 hours more).
    Rotate { id: String },
    /// Delete a hook.
    Delete { id: String },
}

const FIRED_COLUMNS: (&[&str], &[&str]) = (
    &["schedule", "fate", "execution", "duplicate"],
    &[
        "/schedule_id",
        "/fire/fate",
        "/fire/execution_id",
        "/duplicate",
    ],
);

const HOOK_COLUMNS: (&[&str], &[&str]) = (
    &["id", "name", "event", "mode", "path", "rotated"],
    &["/id", "/name", "/event", "/mode", "/path", "/rotated_at"],
);

pub(crate) async fn event(conn: Conn, command: EventCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let EventCommand::Send { name, data, id } = command;
    let data: Value = serde_json::from_str(&data).context("--data is not valid JSON")?;
    let mut body = json!({"name": name, "data": data});
    if let Some(id) = id {
        body["id"] = Value::String(id);
    }
    let answer = client.post("/v1/events", Some(body)).await?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("event {}", text(&answer["id"]));
    let (headers, fields) = FIRED_COLUMNS;
    let fires = json!({ "items": answer["fires"] });
    print(&conn, &fires, headers, fields)
}

pub(crate) async fn hook(conn: Conn, command: HookCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = HOOK_COLUMNS;
    let shown = match command {
        HookCommand::List => return print(&conn, &client.get("/v1/hooks").await?, headers, fields),
        HookCommand::Delete { id } => {
            let request = client.http.delete(client.url(&format!("/v1/hooks/{id}")));
            client.send(request).await?;
            println!("deleted {id}");
            return Ok(ExitCode::SUCCESS);
        }
        HookCommand::Create { name, event, mode } => {
            let body = json!({"name": name, "event": event, "mode": mode});
            client.post("/v1/hooks", Some(body)).await?
        }
        HookCommand::Rotate { id } => client.post(&format!("/v1/hooks/{id}/rotate"), None).await?,
    };
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&conn, &shown["hook"], headers, fields)?;
    println!("secret (shown only now): {}", text(&shown["secret"]));
    Ok(ExitCode::SUCCESS)
}
