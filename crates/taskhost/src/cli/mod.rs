//! The `taskhost` command line.
//!
//! Each subcommand lives in its own module; this one parses arguments, sets up
//! logging and the async runtime, and maps results to exit codes:
//! 0 success, 1 the task did not succeed, 2 a usage or environment error.

mod admin;
mod client;
mod config;
mod cron;
mod new;
mod run;
mod secret;
mod serve;
mod telemetry;
mod token;
mod workflow_args;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// taskhost: a task host for WebAssembly plugins.
///
/// Teams upload sandboxed task plugins (WebAssembly components built with the
/// taskhost SDK), schedule them, and host nodes run them under hard fuel,
/// memory, time and output limits.
/// `taskhost --version`: the release, the commit it was built from, and the
/// plugin contract versions it accepts.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TASKHOST_GIT_COMMIT"),
    "; plugin contract taskhost:plugin/task@0.1.0)"
);

#[derive(Debug, Parser)]
#[command(name = "taskhost", version = VERSION, propagate_version = true)]
pub struct Cli {
    /// Log lines as text or as JSON objects, one a line (with the request,
    /// tenant, execution and node they concern as fields).
    #[arg(long, global = true, env = "TASKHOST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the REST API and run schedules (embedded store by default).
    Serve(Box<config::ServeConfig>),
    Run(run::RunArgs),
    New(new::NewArgs),
    Token(token::TokenArgs),
    /// Upload and list plugins on a server.
    Plugin {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::PluginCommand,
    },
    /// Create, list, pause, resume and trigger schedules on a server.
    Schedule {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::ScheduleCommand,
    },
    /// List and inspect executions on a server.
    Exec {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::ExecCommand,
    },
    /// Set, list and delete the tenant's secrets on a server (values are
    /// never shown).
    Secret {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: secret::SecretCommand,
    },
    /// Send events to the schedules whose trigger is an event.
    Event {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::EventCommand,
    },
    /// Make, list, rotate and delete hooks: public endpoints other services
    /// send events to.
    Hook {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::HookCommand,
    },
    /// Make, list and delete API keys: credentials for machines.
    ApiKey {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::ApiKeyCommand,
    },
    /// Back up the embedded store while it serves, and restore a backup.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Preview a cron expression's fire times in a time zone.
    Cron {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: cron::CronCommand,
    },
    /// List the nodes sharing a store, and drain one before maintenance.
    Node {
        #[command(flatten)]
        conn: client::Conn,
        #[command(subcommand)]
        command: client::NodeCommand,
    },
}

/// Exit code for a usage or environment error (bad flag, unreadable file).
pub(crate) const EXIT_USAGE: u8 = 2;

/// Parses the command line and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up logging itself, once it knows whether to trace.
    if !matches!(cli.command, Command::Serve(_)) {
        telemetry::init(cli.log_format, None);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve::serve(*config, cli.log_format)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Run(args) => run::run(args).await,
            Command::New(args) => new::new(args),
            Command::Token(args) => token::token(args),
            Command::Plugin { conn, command } => client::plugin(conn, command).await,
            Command::Schedule { conn, command } => client::schedule(conn, command).await,
            Command::Exec { conn, command } => client::exec(conn, command).await,
            Command::Node { conn, command } => client::node(conn, command).await,
            Command::Secret { conn, command } => secret::secret(conn, command).await,
            Command::Cron { conn, command } => cron::cron(conn, command).await,
            Command::Admin(command) => admin::admin(command),
            Command::Event { conn, command } => client::event(conn, command).await,
            Command::Hook { conn, command } => client::hook(conn, command).await,
            Command::ApiKey { conn, command } => client::api_key(conn, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_contract_it_accepts() {
        assert!(super::VERSION.contains(taskhost_runtime::WORLD));
        assert!(super::VERSION.starts_with(env!("CARGO_PKG_VERSION")));
    }
}
