//! `serve`'s configuration: every setting is a flag, a `TASKHOST_*`
//! environment variable and a key of the TOML file given with `--config`.
//!
//! Layering is figment's: the file, then the environment, then flags (clap
//! reads a flag before its variable); the file's unknown keys are refused by
//! name. [`Settings`] is the result with every default filled in — what
//! `serve` runs with, and what `--print-config` prints (secrets masked), in
//! the file's own format.

use super::workflow_args::WorkflowArgs;
use crate::api::ApiLimits;
use crate::api::auth::DEFAULT_MAX_LIFETIME;
use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use taskhost_model::Role;
use taskhost_model::quota::QuotaConfig;
use taskhost_scheduler::{DEFAULT_CAPS, SchedulerConfig};

/// Everything `serve` can be told; each field is optional so that flags, the
/// environment and the config file can be layered.
#[derive(Debug, Default, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "TASKHOST_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Store URL: sqlite://PATH or mongodb://HOST:PORT/DATABASE.
    #[arg(long, env = "TASKHOST_STORE", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Folder for the embedded store, compiled plugins and the dev secret.
    #[arg(long, env = "TASKHOST_DATA_DIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS with (needs --tls-key); reread on
    /// SIGHUP.
    #[arg(long, env = "TASKHOST_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TASKHOST_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// File holding the key tenant secrets are sealed under (64 hex digits;
    /// `openssl rand -hex 32`). Or set TASKHOST_SECRETS_KEY to the key itself.
    /// Without either, a development key is made in the data folder.
    #[arg(long, env = "TASKHOST_SECRETS_KEY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key_file: Option<PathBuf>,
    /// HS256 secret for API tokens.
    #[arg(
        long,
        env = "TASKHOST_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// PEM public key file for RS256 or EdDSA tokens (instead of a secret).
    #[arg(long, env = "TASKHOST_JWT_PUBLIC_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of --jwt-public-key: rs256 or eddsa.
    #[arg(long, env = "TASKHOST_JWT_ALGORITHM", value_name = "ALG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_algorithm: Option<String>,
    /// Required `aud` claim of API tokens (not checked when unset).
    #[arg(long, env = "TASKHOST_JWT_AUDIENCE", value_name = "AUD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim of API tokens (not checked when unset).
    #[arg(long, env = "TASKHOST_JWT_ISSUER", value_name = "ISS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// The longest lifetime (iat to exp) an API token may have.
    #[arg(long, env = "TASKHOST_JWT_MAX_LIFETIME", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub jwt_max_lifetime: Option<Duration>,
    /// Runs at once on this node.
    #[arg(long, env = "TASKHOST_WORKERS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Runs at once per tenant on this node (default: a quarter of the
    /// workers, at least 1), so that no tenant can hold every worker.
    #[arg(long, env = "TASKHOST_TENANT_LIMIT", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_limit: Option<usize>,
    /// The most fuel any run may ask for (the node's cap).
    #[arg(long, env = "TASKHOST_MAX_RUN_FUEL", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_run_fuel: Option<u64>,
    /// The longest timeout any run may ask for (the node's cap).
    #[arg(long, env = "TASKHOST_MAX_RUN_TIMEOUT", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub max_run_timeout: Option<Duration>,
    /// The most linear memory any run may ask for, in bytes (the node's cap).
    #[arg(long, env = "TASKHOST_MAX_RUN_MEMORY", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_run_memory: Option<u64>,
    /// How long finished executions are kept (a schedule may say otherwise).
    #[arg(long, env = "TASKHOST_RETENTION", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub retention: Option<Duration>,
    /// Bytes of compiled plugins kept in the data folder; the least recently
    /// used are removed first.
    #[arg(long, env = "TASKHOST_MAX_ARTIFACT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_artifact_bytes: Option<u64>,
    /// Plugin compilations at once (default: one per core). One tenant's
    /// uploads take at most half of them; two more of its uploads wait,
    /// further ones are refused (429 `compile_busy`).
    #[arg(long, env = "TASKHOST_MAX_COMPILES", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_compiles: Option<usize>,
    /// Largest plugin upload, in bytes.
    #[arg(long, env = "TASKHOST_MAX_PLUGIN_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_plugin_bytes: Option<usize>,
    /// What this node does: all (API and runs), api (never runs anything) or
    /// worker (runs; serves only /healthz, /readyz, /metrics).
    #[arg(long, env = "TASKHOST_ROLE", value_name = "ROLE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<taskhost_model::Role>,
    /// How long a node's heartbeat holds; it beats every third of it, and a
    /// drain request takes effect at its next beat.
    #[arg(long, env = "TASKHOST_HEARTBEAT", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub heartbeat: Option<Duration>,
    /// How long a claim holds; a running node renews it every third of it.
    #[arg(long, env = "TASKHOST_LEASE", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub lease: Option<Duration>,
    /// How long runs may take to finish at shutdown before they are released.
    #[arg(long, env = "TASKHOST_GRACE", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub grace: Option<Duration>,
    /// Longest a request may take.
    #[arg(long, env = "TASKHOST_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub request_timeout: Option<Duration>,
    /// Longest wait for a request's headers, also on an idle connection.
    #[arg(long, env = "TASKHOST_HEADER_TIMEOUT", value_name = "DURATION", value_parser = taskhost_model::time::parse_duration)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub header_timeout: Option<Duration>,
    /// Most HTTP connections open at once; more wait to be accepted.
    #[arg(long, env = "TASKHOST_MAX_CONNECTIONS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most HTTP connections open at once from one peer address; more are
    /// closed at once, so that one client cannot hold them all.
    #[arg(long, env = "TASKHOST_MAX_CONNECTIONS_PER_PEER", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_peer: Option<usize>,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "TASKHOST_MAX_BODY_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// This node's id (default: random).
    #[arg(long, env = "TASKHOST_NODE_ID", value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// A TOML file with any of these settings (keys as the flags, with `_`),
    /// and the `[quotas]` and `[network]` sections (file only).
    #[arg(long, env = "TASKHOST_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// Export traces to this OTLP/HTTP endpoint (JSON), e.g.
    /// http://127.0.0.1:4318/v1/traces. Off when unset.
    #[arg(long, env = "TASKHOST_OTLP_ENDPOINT", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The identity provider whose tokens are accepted: `[oidc]` in the file.
    #[command(flatten)]
    #[serde(default)]
    pub oidc: OidcArgs,
    /// The bounds of durable workflows: `[workflow]` in the file.
    #[command(flatten)]
    #[serde(default)]
    pub workflow: WorkflowArgs,
    /// Per-tenant quotas: `[quotas.default]` and `[quotas.tenants.NAME]`.
    #[arg(skip)]
    #[serde(default, skip_serializing)]
    pub quotas: QuotaConfig,
    /// What runs and webhooks may reach: `[network]` (hosts, open_ranges,
    /// plain_http) and `[network.tenants.NAME]`.
    #[arg(skip)]
    #[serde(default, skip_serializing)]
    pub network: Option<taskhost_net::NetworkConfig>,
}

/// An identity provider (OIDC): its tokens are accepted beside the
/// configured key's. Set `--oidc-issuer` (keys found by discovery) or
/// `--oidc-jwks-url`, and `--oidc-audience`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct OidcArgs {
    /// The provider's issuer URL: tokens' `iss`, and where discovery
    /// (`/.well-known/openid-configuration`) finds its keys.
    #[arg(long = "oidc-issuer", env = "TASKHOST_OIDC_ISSUER", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The provider's JWKS URL (instead of discovery).
    #[arg(
        long = "oidc-jwks-url",
        env = "TASKHOST_OIDC_JWKS_URL",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The `aud` the provider's tokens must carry (required).
    #[arg(
        long = "oidc-audience",
        env = "TASKHOST_OIDC_AUDIENCE",
        value_name = "AUD"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Algorithms accepted, comma-separated [default: RS256,ES256,EdDSA].
    #[arg(
        long = "oidc-algorithms",
        env = "TASKHOST_OIDC_ALGORITHMS",
        value_name = "LIST"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<String>,
    /// The claim holding the tenant, or a JSON pointer (`/org/id`) [default: tenant].
    #[arg(
        long = "oidc-tenant-claim",
        env = "TASKHOST_OIDC_TENANT_CLAIM",
        value_name = "CLAIM"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_claim: Option<String>,
    /// The claim holding the scopes (array or space-separated) [default: scope].
    #[arg(
        long = "oidc-scopes-claim",
        env = "TASKHOST_OIDC_SCOPES_CLAIM",
        value_name = "CLAIM"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_claim: Option<String>,
}

impl OidcArgs {
    /// The provider's settings, if one is configured.
    pub fn idp(&self) -> anyhow::Result<Option<crate::api::auth::idp::IdpConfig>> {
        use crate::api::auth::idp::{DEFAULT_ALGORITHMS, parse_algorithms};
        if self.issuer.is_none() && self.jwks_url.is_none() {
            if self.audience.is_some() {
                bail!("--oidc-audience needs --oidc-issuer or --oidc-jwks-url");
            }
            return Ok(None);
        }
        let algorithms = match &self.algorithms {
            Some(list) => parse_algorithms(list)?,
            None => DEFAULT_ALGORITHMS.to_vec(),
        };
        Ok(Some(crate::api::auth::idp::IdpConfig {
            issuer: self.issuer.clone(),
            jwks_url: self.jwks_url.clone(),
            audience: self.audience.clone().unwrap_or_default(),
            algorithms,
            tenant_claim: self.tenant_claim.clone().unwrap_or_else(|| "tenant".into()),
            scopes_claim: self.scopes_claim.clone().unwrap_or_else(|| "scope".into()),
        }))
    }
}

impl ServeConfig {
    /// Lays flags and environment (in `self`) over the config file.
    pub fn layered(self) -> anyhow::Result<ServeConfig> {
        let mut figment = Figment::new();
        if let Some(path) = &self.config {
            if !path.is_file() {
                bail!("the config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let figment = figment.merge(Serialized::defaults(&self));
        let mut merged: ServeConfig = figment.extract().map_err(|e| {
            let file = self
                .config
                .as_ref()
                .map_or(String::new(), |p| format!(" (in {})", p.display()));
            anyhow::anyhow!("invalid configuration{file}: {e}")
        })?;
        merged.config = self.config;
        merged.print_config = self.print_config;
        Ok(merged)
    }

    /// Every setting resolved, defaults filled in.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let defaults = SchedulerConfig::default();
        let api = ApiLimits::default();
        let connections = crate::api::server::ConnectionLimits::default();
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./taskhost-data"));
        let workers = self.workers.unwrap_or(defaults.workers).max(1);
        let retention = self.retention.unwrap_or(defaults.retention);
        if let Some(secret) = &self.jwt_secret
            && secret.len() < MIN_SECRET_BYTES
        {
            bail!(
                "jwt_secret is {} bytes; it must be at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
                secret.len()
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key go together: give both or neither");
        }
        taskhost_model::policy::check_retention(Some(retention))?;
        Ok(Settings {
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            store: self
                .store
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("taskhost.db").display())),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            secrets_key_file: self.secrets_key_file.clone(),
            jwt_secret: self.jwt_secret.clone(),
            jwt_public_key: self.jwt_public_key.clone(),
            jwt_algorithm: self.jwt_algorithm.clone(),
            jwt_audience: self.jwt_audience.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_max_lifetime: self.jwt_max_lifetime.unwrap_or(DEFAULT_MAX_LIFETIME),
            role: self.role.unwrap_or_default(),
            node_id: self.node_id.clone().unwrap_or(defaults.node_id),
            workers,
            tenant_limit: self.tenant_limit.unwrap_or((workers / 4).max(1)),
            lease: self.lease.unwrap_or(defaults.lease),
            heartbeat: self.heartbeat.unwrap_or(defaults.heartbeat_ttl),
            grace: self.grace.unwrap_or(Duration::from_secs(30)),
            request_timeout: self.request_timeout.unwrap_or(api.request_timeout),
            header_timeout: self.header_timeout.unwrap_or(connections.header_timeout),
            max_connections: self
                .max_connections
                .unwrap_or(connections.max_connections)
                .max(1),
            max_connections_per_peer: self
                .max_connections_per_peer
                .unwrap_or(connections.max_per_peer)
                .max(1),
            max_body_bytes: self.max_body_bytes.unwrap_or(api.max_body_bytes),
            max_plugin_bytes: self.max_plugin_bytes.unwrap_or(api.max_plugin_bytes),
            max_artifact_bytes: self
                .max_artifact_bytes
                .unwrap_or(taskhost_runtime::DEFAULT_ARTIFACT_BYTES),
            max_compiles: self
                .max_compiles
                .unwrap_or(taskhost_runtime::CompileBudget::default().concurrent)
                .max(1),
            max_run_fuel: self.max_run_fuel.unwrap_or(DEFAULT_CAPS.fuel),
            max_run_timeout: self.max_run_timeout.unwrap_or(DEFAULT_CAPS.timeout),
            max_run_memory: self.max_run_memory.unwrap_or(DEFAULT_CAPS.memory_bytes),
            retention,
            data_dir,
            otlp_endpoint: self.otlp_endpoint.clone(),
            oidc: self.oidc.clone(),
            workflow: WorkflowArgs::of(&self.workflow.bounds()?),
            quotas: self.quotas.clone(),
            network: self.network.clone().unwrap_or_default(),
        })
    }
}

/// The effective configuration. Its keys are the config file's.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: String,
    pub data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    #[serde(with = "taskhost_model::time::duration")]
    pub jwt_max_lifetime: Duration,
    pub role: Role,
    pub node_id: String,
    pub workers: usize,
    pub tenant_limit: usize,
    #[serde(with = "taskhost_model::time::duration")]
    pub lease: Duration,
    #[serde(with = "taskhost_model::time::duration")]
    pub heartbeat: Duration,
    #[serde(with = "taskhost_model::time::duration")]
    pub grace: Duration,
    #[serde(with = "taskhost_model::time::duration")]
    pub request_timeout: Duration,
    #[serde(with = "taskhost_model::time::duration")]
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub max_body_bytes: usize,
    pub max_plugin_bytes: usize,
    pub max_compiles: usize,
    pub max_artifact_bytes: u64,
    pub max_run_fuel: u64,
    #[serde(with = "taskhost_model::time::duration")]
    pub max_run_timeout: Duration,
    pub max_run_memory: u64,
    #[serde(with = "taskhost_model::time::duration")]
    pub retention: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    pub oidc: OidcArgs,
    pub workflow: WorkflowArgs,
    pub quotas: QuotaConfig,
    pub network: taskhost_net::NetworkConfig,
}

/// The shortest HS256 secret accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// What replaces a secret in printed configuration.
const MASK: &str = "********";

impl Settings {
    /// The settings as a TOML config file, secrets masked.
    pub fn to_toml_masked(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        if shown.jwt_secret.is_some() {
            shown.jwt_secret = Some(MASK.into());
        }
        if let Some(at) = shown.store.find("://")
            && let Some(end) = shown.store[at + 3..].find('@')
        {
            // mongodb://user:password@host → mongodb://********@host
            let end = at + 3 + end;
            shown.store.replace_range(at + 3..end, MASK);
        }
        toml::to_string(&shown).context("could not print the configuration")
    }
}
