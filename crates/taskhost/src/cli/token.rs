//! `taskhost token`: mint a development token from the configured HS256 secret.

use super::serve::dev_secret;
use crate::api::auth::{Scope, mint_hs256};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Mint an API token (HS256) from the server's secret, for development.
///
/// The secret is --secret / TASKHOST_JWT_SECRET, or else the development secret
/// in the data folder (the one `taskhost serve` made). Prints the token.
/// Each token has its own id (the `jti` claim in its payload), by which a
/// tenant's admin can revoke it: `POST /v1/tokens/revocations`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The tenant the token acts for.
    #[arg(long, default_value = "dev")]
    tenant: String,
    /// Scopes, comma-separated: plugins:read, plugins:write, schedules:read,
    /// schedules:write, executions:read, executions:write, secrets:read,
    /// secrets:write, secrets:use, admin (all of a tenant's), operator (the
    /// cluster's nodes; not implied by admin).
    #[arg(long, value_delimiter = ',', default_value = "admin")]
    scopes: Vec<String>,
    /// How long it is valid, e.g. 1h or 30m.
    #[arg(long, default_value = "1h", value_parser = taskhost_model::time::parse_duration)]
    ttl: Duration,
    /// The token's subject (who is calling).
    #[arg(long, default_value = "dev")]
    subject: String,
    /// HS256 secret (else the data folder's development secret).
    #[arg(long, env = "TASKHOST_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The server's data folder.
    #[arg(long, env = "TASKHOST_DATA_DIR", default_value = "./taskhost-data")]
    data_dir: PathBuf,
}

pub(crate) fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let scopes = args
        .scopes
        .iter()
        .map(|s| s.trim().parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .context("invalid --scopes")?;
    let secret = match args.secret {
        Some(secret) => secret,
        None => dev_secret(&args.data_dir)?,
    };
    let token = mint_hs256(
        secret.as_bytes(),
        &args.subject,
        &args.tenant,
        &scopes,
        args.ttl,
        chrono::Utc::now(),
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
