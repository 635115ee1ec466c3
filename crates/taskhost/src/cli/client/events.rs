//! `taskhost event send` and `taskhost hook …`: events, and the public
//! endpoints that send them (see `POST /v1/events` and `/v1/hooks`).

use super::*;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum EventCommand {
    /// Send an event: every schedule whose trigger is this event (and whose
    /// filter its data matches) fires once, and every workflow waiting for
    /// it (its name, its data the wait's filter) wakes. With --to, only that
    /// execution gets it.
    Send {
        /// The event's name, e.g. github.push.
        name: String,
        /// Its data (JSON), given to the runs as input `data`.
        #[arg(long, default_value = "null")]
        data: String,
        /// Its id: an event with the id of one sent before fires nothing again.
        #[arg(long)]
        id: Option<String>,
        /// Send it to this workflow execution only (kept until a wait takes
        /// it).
        #[arg(long, value_name = "EXECUTION")]
        to: Option<String>,
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
    let EventCommand::Send { name, data, id, to } = command;
    let data: Value = serde_json::from_str(&data).context("--data is not valid JSON")?;
    let mut body = json!({"name": name, "data": data});
    if let Some(id) = id {
        body["id"] = Value::String(id);
    }
    let path = match &to {
        Some(execution) => format!("/v1/executions/{execution}/events"),
        None => "/v1/events".to_owned(),
    };
    let answer = client.post(&path, Some(body)).await?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(execution) = to {
        let woke = if answer["woke"] == Value::Bool(true) {
            "woke it"
        } else {
            "kept until a wait takes it"
        };
        println!("event {} to {execution}: {woke}", text(&answer["id"]));
        return Ok(ExitCode::SUCCESS);
    }
    println!("event {}", text(&answer["id"]));
    for woken in answer["woke"].as_array().into_iter().flatten() {
        println!("woke workflow {}", text(woken));
    }
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
