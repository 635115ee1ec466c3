//! `taskhost serve`: the store, the runtime, a scheduler node and the HTTP API
//! in one process.
//!
//! Settings ([`super::config`]) come from flags, then `TASKHOST_*`
//! environment variables, then a TOML file (`--config`), then defaults: the
//! embedded store in `./taskhost-data`, and — when no key is configured — a
//! development secret kept in the data folder, announced with a warning and a
//! ready token. With `--tls-cert`/`--tls-key` it serves HTTPS, and rereads
//! both files on SIGHUP.

use super::config::{ServeConfig, Settings};
use crate::api::auth::idp::Idp;
use crate::api::auth::{self, KeyConfig, Scope, TokenRules, Verifier};
use crate::api::server::{self, ConnectionLimits};
use crate::api::{ApiLimits, AppState, router};
use crate::tls::ServerTls;
use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use taskhost_model::clock::SystemClock;
use taskhost_model::secrets::SecretKey;
use taskhost_runtime::{DirArtifacts, Runtime, RuntimeConfig};
use taskhost_scheduler::{DEFAULT_CAPS, Node, SchedulerConfig};
use taskhost_store::Store;

/// What checks API tokens: the configured key, or else the data folder's
/// development secret (`dev`, read once by `serve`) unless an identity
/// provider is configured; and the provider's keys.
fn verifier(config: &Settings, dev: Option<&str>) -> anyhow::Result<Verifier> {
    let key = match (&config.jwt_secret, &config.jwt_public_key) {
        (Some(_), Some(_)) => bail!("give either --jwt-secret or --jwt-public-key, not both"),
        (Some(secret), None) => Some(KeyConfig::Hs256 {
            secret: secret.as_bytes().to_vec(),
        }),
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            match config
                .jwt_algorithm
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("rs256") => Some(KeyConfig::Rs256 { public_pem: pem }),
                Some("eddsa") => Some(KeyConfig::EdDsa { public_pem: pem }),
                other => bail!(
                    "--jwt-algorithm must be rs256 or eddsa with --jwt-public-key (got {other:?})"
                ),
            }
        }
        (None, None) => dev.map(|secret| KeyConfig::Hs256 {
            secret: secret.as_bytes().to_vec(),
        }),
    };
    let rules = TokenRules {
        audience: config.jwt_audience.clone(),
        issuer: config.jwt_issuer.clone(),
        max_lifetime: config.jwt_max_lifetime,
    };
    let mut verifier = match &key {
        Some(key) => Verifier::new(key)?,
        None => Verifier::without_key(),
    };
    if let Some(idp) = config.oidc.idp()? {
        verifier = verifier.with_idp(Arc::new(Idp::new(idp, auth::EXP_LEEWAY_SECS)?));
    } else if key.is_none() {
        bail!("no key configured and no development secret");
    }
    Ok(verifier.with_rules(&rules))
}

/// The development secret of `data_dir`, made on first use: the folder
/// 0700 and the file 0600. An existing file that others may read is refused
/// (with the command that fixes it), and one that cannot be read is an error,
/// never silently replaced.
pub fn dev_secret(data_dir: &Path) -> anyhow::Result<String> {
    private_file(data_dir, "dev-secret", || Ok(auth::generate_secret()?))
}

/// The file `name` of `data_dir`, made with `make` on first use, private
/// (see [`dev_secret`]).
fn private_file(
    data_dir: &Path,
    name: &str,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let path = data_dir.join(name);
    match std::fs::metadata(&path) {
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    bail!(
                        "{} may be read by others (mode {mode:o}); run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    );
                }
            }
            #[cfg(not(unix))]
            let _ = meta;
            let secret = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            return Ok(secret.trim().to_owned());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    }
    create_private_dir(data_dir)?;
    let secret = make()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(secret)
}

/// The key tenant secrets are sealed under: the operator's file, or
/// `TASKHOST_SECRETS_KEY`, or else a development key made in the data folder
/// (said so in the log).
fn secrets_key(settings: &Settings) -> anyhow::Result<SecretKey> {
    let (text, whence) = if let Some(file) = &settings.secrets_key_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("could not read the secrets key {}", file.display()))?;
        (text, file.display().to_string())
    } else if let Ok(text) = std::env::var("TASKHOST_SECRETS_KEY") {
        (text, "TASKHOST_SECRETS_KEY".to_owned())
    } else {
        let text = private_file(&settings.data_dir, "secrets-key", || {
            Ok(SecretKey::generate())
        })?;
        tracing::warn!(
            key = %settings.data_dir.join("secrets-key").display(),
            "no --secrets-key-file or TASKHOST_SECRETS_KEY configured; tenant secrets are sealed under the development key"
        );
        (text, "the development key".to_owned())
    };
    SecretKey::parse(&text).with_context(|| format!("invalid secrets key in {whence}"))
}

/// Creates `dir` (0700 where it is new).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("could not create {}", dir.display()))
}

/// Runs the server until Ctrl-C or SIGTERM (or prints its configuration).
pub async fn serve(config: ServeConfig, logs: super::LogFormat) -> anyhow::Result<()> {
    let print = config.print_config;
    let settings = config.layered()?.settings()?;
    if print {
        print!("{}", settings.to_toml_masked()?);
        return Ok(());
    }
    let traces = match &settings.otlp_endpoint {
        Some(endpoint) => Some(super::telemetry::traces(endpoint)?),
        None => None,
    };
    super::telemetry::init(logs, traces.as_ref());
    let served = serve_with(settings).await;
    if let Some(provider) = traces {
        super::telemetry::flush(provider).await;
    }
    served
}

/// Runs the server with its settings resolved and logging set up.
async fn serve_with(settings: Settings) -> anyhow::Result<()> {
    let dev = if settings.jwt_secret.is_none()
        && settings.jwt_public_key.is_none()
        && settings.oidc.idp()?.is_none()
    {
        Some(dev_secret(&settings.data_dir)?)
    } else {
        None
    };
    let verifier = verifier(&settings, dev.as_deref())?;
    if let Some(secret) = &dev {
        announce_dev_token(secret, &settings.data_dir)?;
    }
    let url = &settings.store;
    let store = Store::open(url, Arc::new(SystemClock))
        .await
        .with_context(|| format!("could not open the store {url}"))?
        .with_quotas(settings.quotas.clone());
    let verifier = verifier
        .with_rates(crate::api::rates::RequestRates::new(
            settings.quotas.clone(),
        ))
        .with_api_keys(store.clone());
    let (node, runtime) = node(&settings, &store)?;
    let state = AppState {
        store: store.clone(),
        node: node.clone(),
        runtime,
        verifier: Arc::new(verifier),
        limits: Arc::new(ApiLimits {
            max_plugin_bytes: settings.max_plugin_bytes,
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.request_timeout,
        }),
        tls: settings.tls_cert.is_some(),
    };
    run(&settings, state).await
}

/// The development token, printed once (with the warning that goes with it).
fn announce_dev_token(secret: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let hour = Duration::from_secs(3600);
    let now = chrono::Utc::now();
    let token = auth::mint_hs256(secret.as_bytes(), "dev", "dev", &Scope::ALL, hour, now)?;
    eprintln!(
        "WARNING: no --jwt-secret or --jwt-public-key configured; using the development secret in {}.\n\
         Do not use it in production. A token for tenant `dev` with every scope (valid 1h; `taskhost token` mints more):\n\n  export TASKHOST_TOKEN={token}\n",
        data_dir.join("dev-secret").display()
    );
    Ok(())
}

/// This node: its runtime (compiled artifacts in the data folder) and its
/// scheduler, as the settings say.
fn node(settings: &Settings, store: &Store) -> anyhow::Result<(Node, Runtime)> {
    let runtime_config = RuntimeConfig {
        // Each pool slot reserves the largest memory a run may have.
        max_memory_bytes: settings.max_run_memory,
        compile: taskhost_runtime::CompileBudget {
            concurrent: settings.max_compiles,
            ..Default::default()
        },
        ..RuntimeConfig::default()
    };
    let artifacts = DirArtifacts::with_limit(
        settings.data_dir.join("artifacts"),
        settings.max_artifact_bytes,
    );
    let runtime =
        Runtime::with_stores(runtime_config, Arc::new(artifacts), Arc::new(store.clone()))?;
    let caps = taskhost_runtime::Limits {
        fuel: settings.max_run_fuel,
        timeout: settings.max_run_timeout,
        memory_bytes: settings.max_run_memory,
        ..DEFAULT_CAPS
    };
    let policy = taskhost_net::NetworkPolicy::from_config(&settings.network)
        .map_err(|e| anyhow::anyhow!("invalid [network] settings: {e}"))?;
    let config = SchedulerConfig {
        caps,
        workflow_bounds: settings.workflow.bounds()?,
        node_id: settings.node_id.clone(),
        workers: settings.workers,
        tenant_limit: settings.tenant_limit,
        lease: settings.lease,
        retention: settings.retention,
        role: settings.role,
        heartbeat_ttl: settings.heartbeat,
        quotas: settings.quotas.clone(),
        secrets_key: Some(secrets_key(settings)?),
        egress: taskhost_net::Egress::new(policy).map_err(|e| anyhow::anyhow!(e))?,
        start_on_enqueue: true,
        partitioned: true,
        // Half a second off the whole second: the pass that makes a
        // second's fires runs between the starts of fires on whole seconds
        // (most cron schedules), not at the same instant as them.
        fire_horizon: Duration::from_millis(1500),
        ..SchedulerConfig::default()
    };
    Ok((Node::new(config, store.clone(), runtime.clone()), runtime))
}

/// Serves the API and runs the node until a shutdown signal, then stops
/// both gracefully.
async fn run(settings: &Settings, state: AppState) -> anyhow::Result<()> {
    let node = state.node.clone();
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls::load(cert, key)?),
        _ => None,
    };
    let listen = settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    println!(
        "taskhost listening on {}://{} (store: {}, node: {}, role: {})",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        state.store.kind(),
        node.id(),
        node.config().role.as_str()
    );
    let grace = settings.grace;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let scheduler = {
        let (node, stop) = (node.clone(), stopped(stop_rx.clone()));
        tokio::spawn(async move { node.run(stop, grace).await })
    };
    // Revoked tokens are refused from the first request on: read before
    // serving, or — with the store away — no token is accepted (503) until
    // the refresh has read them.
    let revoked = state.verifier.revoked().clone();
    if let Err(e) = revoked.load(&state.store).await {
        tracing::warn!(error = %e, "could not read the revoked tokens; refusing tokens until they are read");
        revoked.unread();
    }
    tokio::spawn(revoked.refresh(state.store.clone()));
    // The identity provider's keys, before the first request; a provider
    // away now is tried again as tokens come (its tokens get 503 until then).
    if let Some(idp) = state.verifier.idp() {
        match idp.refresh().await {
            Ok(n) => tracing::info!(keys = n, "fetched the identity provider's keys"),
            Err(e) => tracing::warn!(error = %e, "could not fetch the identity provider's keys"),
        }
    }
    let app = router(state);
    let limits = ConnectionLimits {
        header_timeout: settings.header_timeout,
        max_connections: settings.max_connections,
        max_per_peer: settings.max_connections_per_peer,
    };
    let http = match tls {
        Some(tls) => {
            tokio::spawn(reload_on_sighup(tls.clone(), node.clone()));
            let listener = tls.listener(listener)?;
            tokio::spawn(server::serve(listener, app, limits, stopped(stop_rx)))
        }
        None => tokio::spawn(server::serve(listener, app, limits, stopped(stop_rx))),
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let grace = taskhost_model::time::human(grace);
        eprintln!("shutting down: finishing runs (up to {grace})");
        let _ = stop_tx.send(true);
    });
    http.await.context("the HTTP server stopped")?;
    scheduler.await.context("the scheduler failed")?;
    Ok(())
}

/// Rereads the TLS certificate and key at every SIGHUP (e.g. after renewal).
async fn reload_on_sighup(tls: Arc<ServerTls>, node: Node) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    node.metrics().tls_reload_failed();
                    tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (tls, node);
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
