//! Reaching the world: the network policy of a node, its tenants and each
//! run, and the one HTTP client that plugins' requests and webhooks go out
//! through.
//!
//! Deny by default, in three layers that must all agree:
//!
//! - the **run's grant** (`"network": {"allow": [...]}` on a schedule or an
//!   ad hoc run) names the hosts its plugin may call; without one it may call
//!   none;
//! - the **tenant's policy** (`[network.tenants.NAME] hosts`) bounds what the
//!   tenant's grants may name (any host unless the operator says otherwise);
//! - the **node's policy** (`[network] hosts`, `open_ranges`, `plain_http`)
//!   bounds everything, and refuses private, loopback, link-local and
//!   metadata addresses on the resolved address unless a range is opened.
//!
//! - [`pattern`]: host patterns (`api.example.com`, `*.example.com:443`);
//! - [`addr`]: which addresses are refused;
//! - [`egress`]: the checks and the client;
//! - [`dns`]: name lookups on their own bounded pool of threads;
//! - [`tls`]: the process's crypto provider and the CLI's HTTPS client.

pub mod addr;
pub mod dns;
pub mod egress;
pub mod pattern;
pub mod tls;
pub mod trace;

pub use egress::{Egress, NetworkPolicy, Refusal};
pub use pattern::{BadPattern, HostPattern};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[network]` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Host patterns any request from this node may reach (default `["*"]`).
    pub hosts: Vec<String>,
    /// Address ranges opened although they are loopback, private, link-local
    /// or otherwise refused, e.g. `["127.0.0.0/8"]` for a local test server.
    pub open_ranges: Vec<String>,
    /// Whether plain `http://` may be used (default: https only).
    pub plain_http: bool,
    /// Per-tenant host patterns: what each tenant's grants may name.
    pub tenants: BTreeMap<String, TenantNetwork>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            hosts: vec!["*".into()],
            open_ranges: Vec::new(),
            plain_http: false,
            tenants: BTreeMap::new(),
        }
    }
}

/// `[network.tenants.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantNetwork {
    /// Host patterns the tenant's grants may name.
    pub hosts: Vec<String>,
}

/// What a schedule or run grants its plugin: the hosts it may call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkGrant {
    /// Host patterns: `api.example.com`, `*.example.com`, `host:port`, `*`.
    #[serde(default)]
    pub allow: Vec<String>,
}
