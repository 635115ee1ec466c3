//! The node's one way out: an HTTP client whose every connection goes to an
//! address the policy allows, and the checks a request passes first.
//!
//! A request is checked in two steps. Before it is sent: its scheme
//! (`https`, or `http` where the operator allows it), its host against the
//! node's, the tenant's and the run's patterns, and — for an IP literal —
//! the address. When it connects: the client's resolver looks the name up
//! and refuses every forbidden address it returns, so the address checked is
//! the address connected to (no second lookup a rebinding DNS server could
//! answer differently). Redirects are never followed by the client: a
//! plugin (or the SDK) that follows one makes a new request, checked anew.

use super::NetworkConfig;
use super::addr::OpenRanges;
use super::pattern::{self, HostPattern};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a request was not sent. The text is what the plugin (or a webhook
/// delivery record) sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL is not an absolute http(s) URL (scheme {scheme:?})")]
    BadUrl { scheme: String },
    #[error("plain http:// is not allowed on this node; use https://")]
    PlainHttp,
    #[error(
        "host {host}:{port} is not granted to this run; add it to the schedule's or the run's \"network\": {{\"allow\": [...]}}"
    )]
    NotGranted { host: String, port: u16 },
    #[error("host {host}:{port} is outside the tenant's network policy")]
    TenantPolicy { host: String, port: u16 },
    #[error("host {host}:{port} is outside this node's network policy")]
    NodePolicy { host: String, port: u16 },
    #[error("{host} is {ip}, a {kind} address; this node does not connect to those")]
    Address {
        host: String,
        ip: std::net::IpAddr,
        kind: &'static str,
    },
}

/// A name that did not resolve: an ordinary failure (it may resolve later),
/// not a refusal.
#[derive(Debug, thiserror::Error)]
#[error("{host} could not be resolved: {why}")]
struct Unresolved {
    host: String,
    why: String,
}

/// The node's network policy, parsed.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    hosts: Vec<HostPattern>,
    tenants: HashMap<String, Vec<HostPattern>>,
    open: OpenRanges,
    plain_http: bool,
}

impl NetworkPolicy {
    /// Whether any host may be reached at all (the node's hosts are not empty).
    pub fn allows_any_host(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Parses the `[network]` section; the error names the bad entry.
    pub fn from_config(config: &NetworkConfig) -> Result<Self, String> {
        let hosts = pattern::parse_all(&config.hosts).map_err(|e| format!("network.hosts: {e}"))?;
        let mut tenants = HashMap::new();
        for (tenant, t) in &config.tenants {
            let list = pattern::parse_all(&t.hosts)
                .map_err(|e| format!("network.tenants.{tenant}.hosts: {e}"))?;
            tenants.insert(tenant.clone(), list);
        }
        Ok(NetworkPolicy {
            hosts,
            tenants,
            open: OpenRanges::parse(&config.open_ranges)
                .map_err(|e| format!("network.open_ranges: {e}"))?,
            plain_http: config.plain_http,
        })
    }

    /// The patterns `tenant` may grant (`*` unless the operator says otherwise).
    fn tenant_hosts(&self, tenant: &str) -> Option<&[HostPattern]> {
        self.tenants.get(tenant).map(Vec::as_slice)
    }

    /// Checks that a grant stays within the tenant's and the node's policy:
    /// each of its patterns must be covered by one of each.
    pub fn check_grant(&self, tenant: &str, grant: &[HostPattern]) -> Result<(), String> {
        for p in grant {
            if !self.hosts.iter().any(|n| n.covers(p)) {
                return Err(format!("{p} is outside this server's network policy"));
            }
            if let Some(list) = self.tenant_hosts(tenant)
                && !list.iter().any(|t| t.covers(p))
            {
                return Err(format!("{p} is outside the tenant's network policy"));
            }
        }
        Ok(())
    }

    /// Checks a URL before it is sent: scheme, the three host lists, and an
    /// IP literal's address. `grant` is `None` for the node's own requests
    /// (webhooks), which pass the tenant's and node's lists only.
    pub fn check_url(
        &self,
        tenant: &str,
        grant: Option<&[HostPattern]>,
        url: &reqwest::Url,
    ) -> Result<(), Refusal> {
        match url.scheme() {
            "https" => {}
            "http" if self.plain_http => {}
            "http" => return Err(Refusal::PlainHttp),
            _ => {
                return Err(Refusal::BadUrl {
                    scheme: url.scheme().to_owned(),
                });
            }
        }
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(Refusal::BadUrl {
                scheme: url.scheme().to_owned(),
            });
        };
        let name = host.to_string();
        let refused = |make: fn(String, u16) -> Refusal| Err(make(name.clone(), port));
        if let Some(grant) = grant
            && !pattern::any_matches(grant, &name, port)
        {
            return refused(|host, port| Refusal::NotGranted { host, port });
        }
        if let Some(list) = self.tenant_hosts(tenant)
            && !pattern::any_matches(list, &name, port)
        {
            return refused(|host, port| Refusal::TenantPolicy { host, port });
        }
        if !pattern::any_matches(&self.hosts, &name, port) {
            return refused(|host, port| Refusal::NodePolicy { host, port });
        }
        let literal = match host {
            url::Host::Ipv4(ip) => Some(std::net::IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(std::net::IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && let Some(kind) = self.open.refuse(ip)
        {
            return Err(Refusal::Address {
                host: name,
                ip,
                kind,
            });
        }
        Ok(())
    }
}

/// The node's HTTP client for plugins and webhooks. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<NetworkPolicy>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// A client under `policy`: TLS verified against the system's roots, no
    /// proxy from the environment, no redirects, addresses checked at
    /// connect time.
    pub fn new(policy: NetworkPolicy) -> Result<Self, String> {
        crate::tls::install_provider();
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("could not build the outbound HTTP client: {e}"))?;
        Ok(Egress { policy, client })
    }

    /// A deny-all egress: every host is outside the node's policy.
    pub fn deny_all() -> Self {
        let deny = || NetworkPolicy {
            hosts: Vec::new(),
            tenants: HashMap::new(),
            open: OpenRanges::default(),
            plain_http: false,
        };
        // Building a client without a proxy does not fail in practice; if it
        // ever does, the plain one is never used: every host is refused first.
        Egress::new(deny()).unwrap_or_else(|_| Egress {
            policy: Arc::new(deny()),
            client: reqwest::Client::new(),
        })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Resolves names and drops every address the policy refuses; with none
/// left, the lookup fails with the [`Refusal`] of the first.
struct CheckedResolver {
    policy: Arc<NetworkPolicy>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                crate::dns::Lookups::get()
                    .lookup(&host)
                    .await
                    .map_err(|e| {
                        Box::new(Unresolved {
                            host: host.clone(),
                            why: e.to_string(),
                        }) as Box<dyn std::error::Error + Send + Sync>
                    })?;
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.open.refuse(a.ip()) {
                    None => true,
                    Some(kind) => {
                        first_refusal.get_or_insert(Refusal::Address {
                            host: host.clone(),
                            ip: a.ip(),
                            kind,
                        });
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match first_refusal {
                    Some(refusal) => Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>,
                    None => Box::new(Unresolved {
                        host,
                        why: "no addresses".into(),
                    }),
                });
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The [`Refusal`] somewhere in `error`'s chain of causes, if any.
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(r) = refusal_in(inner)
        {
            return Some(r);
        }
        cause = e.source();
    }
    None
}

/// A short description of a failed request: the refusal, a timeout, or the
/// innermost cause.
pub fn describe(error: &reqwest::Error) -> String {
    if let Some(r) = refusal_in(error) {
        return r.to_string();
    }
    if error.is_timeout() {
        return "timed out".into();
    }
    // reqwest's own message names the URL, query and all; the causes do not.
    let mut text = String::from(if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the body failed"
    } else {
        "the request failed"
    });
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}
