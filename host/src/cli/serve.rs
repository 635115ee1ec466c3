//! `taskhost serve`: the store, the runtime, a scheduler node and the HTTP API
//! in one process.
//!
//! Settings come from flags, then `TASKHOST_*` environment variables, then a
//! TOML file (`--config`), then defaults: the embedded store in
//! `./taskhost-data`, and — when no key is configured — a development secret
//! kept in the data folder, announced with a warning and a ready token.

use crate::api::auth::{self, KeyConfig, Scope, Verifier};
use crate::api::{ApiLimits, AppState, router};
use crate::clock::SystemClock;
use crate::quota::QuotaConfig;
use crate::runtime::{DirArtifacts, Runtime, RuntimeConfig};
use crate::scheduler::{Node, SchedulerConfig};
use crate::store::Store;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` can be told; each field is optional so that flags, the
/// environment and the config file can be layered.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "TASKHOST_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Store URL: sqlite://PATH or mongodb://HOST:PORT/DATABASE.
    #[arg(long, env = "TASKHOST_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Folder for the embedded store, compiled plugins and the dev secret.
    #[arg(long, env = "TASKHOST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret for API tokens.
    #[arg(
        long,
        env = "TASKHOST_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// PEM public key file for RS256 or EdDSA tokens (instead of a secret).
    #[arg(long, env = "TASKHOST_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of --jwt-public-key: rs256 or eddsa.
    #[arg(long, env = "TASKHOST_JWT_ALGORITHM", value_name = "ALG")]
    pub jwt_algorithm: Option<String>,
    /// Runs at once on this node.
    #[arg(long, env = "TASKHOST_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Runs at once per tenant on this node (default: a quarter of the
    /// workers, at least 1), so that no tenant can hold every worker.
    #[arg(long, env = "TASKHOST_TENANT_LIMIT", value_name = "N")]
    pub tenant_limit: Option<usize>,
    /// The most fuel any run may ask for (the node's cap).
    #[arg(long, env = "TASKHOST_MAX_RUN_FUEL", value_name = "N")]
    pub max_run_fuel: Option<u64>,
    /// The longest timeout any run may ask for (the node's cap).
    #[arg(long, env = "TASKHOST_MAX_RUN_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "crate::serde_util::option_duration")]
    pub max_run_timeout: Option<Duration>,
    /// The most linear memory any run may ask for, in bytes (the node's cap).
    #[arg(long, env = "TASKHOST_MAX_RUN_MEMORY", value_name = "BYTES")]
    pub max_run_memory: Option<u64>,
    /// How long finished executions are kept (a schedule may say otherwise).
    #[arg(long, env = "TASKHOST_RETENTION", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "crate::serde_util::option_duration")]
    pub retention: Option<Duration>,
    /// Largest plugin upload, in bytes.
    #[arg(long, env = "TASKHOST_MAX_PLUGIN_BYTES", value_name = "BYTES")]
    pub max_plugin_bytes: Option<usize>,
    /// What this node does: all (API and runs), api (never runs anything) or
    /// worker (runs; serves only /healthz, /readyz, /metrics).
    #[arg(long, env = "TASKHOST_ROLE", value_name = "ROLE", value_enum)]
    pub role: Option<crate::scheduler::Role>,
    /// How long a node's heartbeat holds; it beats every third of it, and a
    /// drain request takes effect at its next beat.
    #[arg(long, env = "TASKHOST_HEARTBEAT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "crate::serde_util::option_duration")]
    pub heartbeat: Option<Duration>,
    /// This node's id (default: random).
    #[arg(long, env = "TASKHOST_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// A TOML file with any of these settings (keys as the flags, with `_`),
    /// and the `[quotas]` section (file only).
    #[arg(long, env = "TASKHOST_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Per-tenant quotas: `[quotas.default]` and `[quotas.tenants.NAME]`.
    #[arg(skip)]
    #[serde(default)]
    pub quotas: QuotaConfig,
}

impl ServeConfig {
    /// Fills what flags and environment left unset from the config file.
    fn layered(self) -> anyhow::Result<ServeConfig> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let file: ServeConfig = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(ServeConfig {
            listen: self.listen.or(file.listen),
            store: self.store.or(file.store),
            data_dir: self.data_dir.or(file.data_dir),
            jwt_secret: self.jwt_secret.or(file.jwt_secret),
            jwt_public_key: self.jwt_public_key.or(file.jwt_public_key),
            jwt_algorithm: self.jwt_algorithm.or(file.jwt_algorithm),
            workers: self.workers.or(file.workers),
            tenant_limit: self.tenant_limit.or(file.tenant_limit),
            retention: self.retention.or(file.retention),
            role: self.role.or(file.role),
            heartbeat: self.heartbeat.or(file.heartbeat),
            max_run_fuel: self.max_run_fuel.or(file.max_run_fuel),
            max_run_timeout: self.max_run_timeout.or(file.max_run_timeout),
            max_run_memory: self.max_run_memory.or(file.max_run_memory),
            quotas: file.quotas,
            max_plugin_bytes: self.max_plugin_bytes.or(file.max_plugin_bytes),
            node_id: self.node_id.or(file.node_id),
            config: self.config,
        })
    }
}

/// The key that checks API tokens: configured, or the data folder's dev secret.
fn verifier(config: &ServeConfig, data_dir: &Path) -> anyhow::Result<Verifier> {
    let key = match (&config.jwt_secret, &config.jwt_public_key) {
        (Some(_), Some(_)) => bail!("give either --jwt-secret or --jwt-public-key, not both"),
        (Some(secret), None) => KeyConfig::Hs256 {
            secret: secret.as_bytes().to_vec(),
        },
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            match config
                .jwt_algorithm
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("rs256") => KeyConfig::Rs256 { public_pem: pem },
                Some("eddsa") => KeyConfig::EdDsa { public_pem: pem },
                other => bail!(
                    "--jwt-algorithm must be rs256 or eddsa with --jwt-public-key (got {other:?})"
                ),
            }
        }
        (None, None) => KeyConfig::Hs256 {
            secret: dev_secret(data_dir)?.into_bytes(),
        },
    };
    Ok(Verifier::new(&key)?)
}

/// The development secret of `data_dir`, made on first use.
pub fn dev_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("dev-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create {}", data_dir.display()))?;
    let secret = auth::generate_secret()?;
    std::fs::write(&path, &secret)
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(secret)
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let config = config.layered()?;
    let data_dir = config
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./taskhost-data"));
    let url = config
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("taskhost.db").display()));
    let verifier = verifier(&config, &data_dir)?
        .with_rates(crate::api::rates::RequestRates::new(config.quotas.clone()));
    if config.jwt_secret.is_none() && config.jwt_public_key.is_none() {
        let secret = dev_secret(&data_dir)?;
        let scopes = Scope::ALL;
        let token = auth::mint_hs256(
            secret.as_bytes(),
            "dev",
            "dev",
            &scopes,
            Duration::from_secs(86_400),
            chrono::Utc::now(),
        )?;
        eprintln!(
            "WARNING: no --jwt-secret or --jwt-public-key configured; using the development secret in {}.\n\
             Do not use it in production. A token for tenant `dev` with every scope (valid 24h):\n\n  export TASKHOST_TOKEN={token}\n",
            data_dir.join("dev-secret").display()
        );
    }
    let store = Store::open(&url, Arc::new(SystemClock))
        .await
        .with_context(|| format!("could not open the store {url}"))?;
    let runtime_config = RuntimeConfig {
        // Each pool slot reserves the largest memory a run may have.
        max_memory_bytes: config
            .max_run_memory
            .unwrap_or(crate::scheduler::DEFAULT_CAPS.memory_bytes),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_stores(
        runtime_config,
        Arc::new(DirArtifacts::new(data_dir.join("artifacts"))),
        Arc::new(store.clone()),
    )?;
    let defaults = SchedulerConfig::default();
    let workers = config.workers.unwrap_or(defaults.workers).max(1);
    if let Some(retention) = config.retention {
        crate::scheduler::policy::check_retention(Some(retention))?;
    }
    let mut caps = defaults.caps;
    caps.fuel = config.max_run_fuel.unwrap_or(caps.fuel);
    caps.timeout = config.max_run_timeout.unwrap_or(caps.timeout);
    caps.memory_bytes = config.max_run_memory.unwrap_or(caps.memory_bytes);
    let node = Node::new(
        SchedulerConfig {
            caps,
            node_id: config.node_id.clone().unwrap_or(defaults.node_id.clone()),
            workers,
            tenant_limit: config.tenant_limit.unwrap_or((workers / 4).max(1)),
            retention: config.retention.unwrap_or(defaults.retention),
            role: config.role.unwrap_or_default(),
            heartbeat_ttl: config.heartbeat.unwrap_or(defaults.heartbeat_ttl),
            quotas: config.quotas.clone(),
            ..defaults
        },
        store.clone(),
        runtime.clone(),
    );
    let mut limits = ApiLimits::default();
    if let Some(max) = config.max_plugin_bytes {
        limits.max_plugin_bytes = max;
    }
    let state = AppState {
        store: store.clone(),
        node: node.clone(),
        runtime,
        verifier: Arc::new(verifier),
        limits: Arc::new(limits),
    };
    let listen = config
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let address = listener.local_addr()?;
    println!(
        "taskhost listening on http://{address} (store: {}, node: {}, role: {})",
        store.kind(),
        node.id(),
        node.config().role.as_str()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = {
        let node = node.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            node.run(
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
                Duration::from_secs(30),
            )
            .await
        })
    };
    let mut stop = stop_rx;
    let http = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("shutting down: finishing runs (up to 30s)");
        let _ = stop_tx.send(true);
    });
    http.await.context("the HTTP server failed")?;
    scheduler.await.context("the scheduler failed")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
