//! `taskhost secret`: set, list and delete a tenant's secrets on a server.
//! A value is read from --value, a file, or stdin; it is never printed.

use super::client::{Client, Conn, print};
use anyhow::Context;
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SecretCommand {
    /// Set a secret: from --value, --from-file, or stdin (a trailing newline
    /// is dropped).
    Set {
        name: String,
        /// The value (it may show in your shell's history: prefer stdin).
        #[arg(long, conflicts_with = "from_file")]
        value: Option<String>,
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List the secrets: names, versions, times (never values).
    List,
    /// Delete a secret.
    Delete { name: String },
}

const COLUMNS: (&[&str], &[&str]) = (
    &["name", "version", "updated"],
    &["/name", "/version", "/updated_at"],
);

pub(crate) async fn secret(conn: Conn, command: SecretCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = COLUMNS;
    let answer = match command {
        SecretCommand::Set {
            name,
            value,
            from_file,
        } => {
            let value = match (value, from_file) {
                (Some(value), _) => value,
                (None, Some(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("could not read {}", file.display()))?,
                (None, None) => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("could not read the value from stdin")?;
                    text
                }
            };
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let request = client
                .http
                .put(client.url(&format!("/v1/secrets/{name}")))
                .json(&json!({ "value": value }));
            client.send(request).await?
        }
        SecretCommand::List => client.get("/v1/secrets").await?,
        SecretCommand::Delete { name } => {
            let request = client
                .http
                .delete(client.url(&format!("/v1/secrets/{name}")));
            client.send(request).await?;
            println!("deleted {name}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    print(&conn, &answer, headers, fields)
}
