//! `taskhost run`: run a plugin once, locally, under the same limits as a node.

use anyhow::{Context, bail};
use bytesize::ByteSize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use taskhost_model::clock::{SharedClock, SystemClock};
use taskhost_model::workflow::MemorySink;
use taskhost_net::{Egress, NetworkConfig, NetworkPolicy};
use taskhost_runtime::{
    ArtifactCache, DirArtifacts, Limits, MemoryArtifacts, MemoryKv, Outcome, RunNetwork,
    RunRequest, RunWorkflow, Runtime, RuntimeConfig, Status,
};

/// Run a plugin once, locally, and print its outcome as JSON.
///
/// The plugin runs in the same sandbox and under the same limits as on a
/// node. The outcome is printed as one JSON object on stdout; its `status` is
/// one of succeeded, failed, out_of_fuel, memory_limit, timed_out, trapped,
/// output_too_large, invalid_plugin, or suspended (a workflow that waits
/// longer than --max-wait). The exit code is 0 only when the
/// status is `succeeded` (1 otherwise, 2 for a usage error).
///
/// A durable workflow runs as on a node: its steps are kept (in memory), and
/// when it suspends — a sleep, a wait for an event (none comes here) — it is
/// run again at its wake time, replaying its steps, if that is within
/// --max-wait; otherwise the suspended outcome is printed. Child runs
/// (`spawn`) need a node.
///
/// Example: taskhost run hello.wasm --input '{"name":"Ada"}'
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The plugin: a WebAssembly component (.wasm) built for wasm32-wasip2.
    file: PathBuf,

    /// The input: inline JSON, or @PATH to read it from a file. Without it the
    /// plugin gets empty input (the SDK reads that as JSON null).
    #[arg(long, value_name = "JSON|@FILE")]
    input: Option<String>,

    /// Fuel for the run (roughly, WebAssembly instructions).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_FUEL)]
    fuel: u64,

    /// Linear memory limit, e.g. 64MiB or 1GiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    memory: u64,

    /// Wall-clock limit, e.g. 5s or 250ms.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = taskhost_model::time::parse_duration)]
    timeout: Duration,

    /// Largest output the plugin may return.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    output_limit: u64,

    /// Most the plugin may write to each of stdout, stderr and its log.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    log_limit: u64,

    /// A config value the plugin can read (repeatable): --config key=value.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,

    /// A host the plugin may call over HTTP (repeatable): api.example.com,
    /// *.example.com:443, or * for any. Without one it may call none.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,

    /// Open an address range that is refused by default (repeatable), e.g.
    /// 127.0.0.0/8 to call a server on this machine.
    #[arg(long = "allow-range", value_name = "CIDR")]
    allow_ranges: Vec<String>,

    /// Allow plain http:// (default: https only).
    #[arg(long)]
    allow_http: bool,

    /// The longest a workflow's sleep or wait is waited out here; one that
    /// suspends for longer ends the command, printing the suspended outcome.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = taskhost_model::time::parse_duration)]
    max_wait: Duration,

    /// Print the outcome on one line instead of indented.
    #[arg(long)]
    compact: bool,

    /// Where compiled plugins are kept, by their bytes' hash, so the next
    /// run of the same file starts without compiling (default:
    /// $XDG_CACHE_HOME/taskhost, else ~/.cache/taskhost).
    #[arg(long, env = "TASKHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Compile afresh and keep nothing.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

/// Runs the plugin, and again (replaying its steps) each time it suspends
/// until a time within `max_wait`.
async fn run_workflow(
    runtime: &Runtime,
    wasm: &[u8],
    request: RunRequest,
    max_wait: Duration,
) -> Outcome {
    let sink = Arc::new(MemorySink::default());
    let clock: SharedClock = Arc::new(SystemClock);
    let mut waiting = None;
    loop {
        let mut this = request.clone();
        this.workflow = Some(RunWorkflow {
            steps: sink.steps(),
            sink: sink.clone(),
            clock: clock.clone(),
            inbox: Vec::new(),
            waiting: waiting.take(),
            bounds: Default::default(),
        });
        let outcome = runtime.run_wasm(wasm, this).await;
        let until = outcome
            .suspended_until
            .filter(|_| outcome.status == Status::Suspended);
        let Some(until) = until else {
            return outcome;
        };
        let wait = (until - clock.now()).to_std().unwrap_or_default();
        if wait > max_wait {
            return outcome;
        }
        eprintln!(
            "taskhost run: suspended until {until} ({} steps recorded); running it again then",
            sink.steps().len()
        );
        waiting = outcome.waiting;
        tokio::time::sleep(wait).await;
    }
}

/// Bytes of compiled plugins `taskhost run` keeps (least recently used go).
const CACHE_BYTES: u64 = 1 << 30;

/// Where `taskhost run` keeps compiled plugins: none with `--no-cache`.
fn artifacts(args: &RunArgs) -> Arc<dyn ArtifactCache> {
    let home = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
    let dir = match (&args.cache_dir, args.no_cache) {
        (_, true) => None,
        (Some(dir), _) => Some(dir.clone()),
        (None, _) => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(home)
            .map(|d| d.join("taskhost")),
    };
    match dir {
        Some(dir) => Arc::new(DirArtifacts::with_limit(dir.join("artifacts"), CACHE_BYTES)),
        None => Arc::new(MemoryArtifacts::default()),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("{e} (examples: 64MiB, 512KiB, 1GiB)"))
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn read_input(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let Some(arg) = arg else {
        return Ok(Vec::new());
    };
    let bytes = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("could not read the input file {path}"))?
        }
        None => arg.as_bytes().to_vec(),
    };
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        bail!("--input is not valid JSON: {e}");
    }
    Ok(bytes)
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("could not read the plugin {}", args.file.display()))?;
    let input = read_input(args.input.as_deref())?;
    let config = RuntimeConfig {
        max_concurrent_runs: 4,
        max_memory_bytes: args.memory.max(RuntimeConfig::default().max_memory_bytes),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_stores(config, artifacts(&args), Arc::new(MemoryKv::default()))?;
    let mut request = RunRequest::new(input);
    request.limits = Limits {
        fuel: args.fuel,
        memory_bytes: args.memory,
        timeout: args.timeout,
        output_bytes: args.output_limit,
        log_bytes: args.log_limit,
        ..Limits::default()
    };
    if !args.allow_hosts.is_empty() {
        let policy = NetworkPolicy::from_config(&NetworkConfig {
            open_ranges: args.allow_ranges,
            plain_http: args.allow_http,
            ..NetworkConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        request.network = Some(RunNetwork {
            egress: Egress::new(policy).map_err(|e| anyhow::anyhow!("{e}"))?,
            tenant: "local".into(),
            allow: taskhost_net::pattern::parse_all(&args.allow_hosts)?,
        });
    }
    request.config = Arc::new(args.config.into_iter().collect::<BTreeMap<_, _>>());
    let outcome = run_workflow(&runtime, &wasm, request, args.max_wait).await;
    let json = if args.compact {
        serde_json::to_string(&outcome)?
    } else {
        serde_json::to_string_pretty(&outcome)?
    };
    println!("{json}");
    Ok(if outcome.status == Status::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
