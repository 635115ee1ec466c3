//! `taskhost api-key …`: API keys for machines (see `/v1/api-keys`).

use super::*;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Make an API key with some of your scopes. Prints the key, shown
    /// only now.
    Create {
        /// A label for people, e.g. "ci deploys".
        #[arg(long)]
        name: String,
        /// Its scopes, comma-separated (none you lack).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// How long it works, e.g. 90d (default: until deleted).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List the tenant's API keys with their last use (never their secrets).
    List,
    /// Delete (revoke) an API key: refused on every node within a second.
    Delete { id: String },
}

const COLUMNS: (&[&str], &[&str]) = (
    &["id", "name", "scopes", "expires", "last used"],
    &["/id", "/name", "/scopes", "/expires_at", "/last_used_at"],
);

pub(crate) async fn api_key(conn: Conn, command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(conn.clone())?;
    let (headers, fields) = COLUMNS;
    let made = match command {
        ApiKeyCommand::List => {
            let keys = client.get("/v1/api-keys").await?;
            return print(&conn, &keys, headers, fields);
        }
        ApiKeyCommand::Delete { id } => {
            let request = client
                .http
                .delete(client.url(&format!("/v1/api-keys/{id}")));
            client.send(request).await?;
            println!("deleted {id}");
            return Ok(ExitCode::SUCCESS);
        }
        ApiKeyCommand::Create {
            name,
            scopes,
            expires_in,
        } => {
            let mut body = json!({"name": name, "scopes": scopes});
            if let Some(expires_in) = expires_in {
                body["expires_in"] = Value::String(expires_in);
            }
            client.post("/v1/api-keys", Some(body)).await?
        }
    };
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&made)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&conn, &made["api_key"], headers, fields)?;
    println!("key (shown only now): {}", text(&made["key"]));
    Ok(ExitCode::SUCCESS)
}
