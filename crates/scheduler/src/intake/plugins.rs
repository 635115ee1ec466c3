//! Plugin references, resolved once per intake: the one place an id, a
//! pinned `name@version` or a followed `name@alias` becomes a plugin.

use crate::Node;
use std::time::{Duration, Instant};
use taskhost_model::Schedule;
use taskhost_store::StoreError;

/// How long this node trusts that a plugin it looked up still exists.
pub const PLUGIN_SEEN_TTL: Duration = Duration::from_secs(1);

/// The plugin a piece of work names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginRef {
    /// A plugin version by id, which must exist in the tenant.
    Id(String),
    /// `name@version` (pinned), `name@latest` or `name@ALIAS` (followed).
    Ref(String),
    /// A schedule following `alias`, which pointed to `last` at its last
    /// fire (what a record of a fire that does not run names).
    Follows { alias: String, last: String },
    /// A plugin known to exist: a schedule's pinned plugin (a plugin cannot
    /// be deleted while a schedule uses it).
    Known(String),
}

impl PluginRef {
    /// What a schedule's fires run: its alias, or its pinned plugin.
    pub fn of_schedule(s: &Schedule) -> PluginRef {
        match &s.plugin_alias {
            Some(alias) => PluginRef::Follows {
                alias: alias.clone(),
                last: s.plugin_id.clone(),
            },
            None => PluginRef::Known(s.plugin_id.clone()),
        }
    }

    /// The reference as the client wrote it.
    pub fn text(&self) -> &str {
        match self {
            PluginRef::Id(id) | PluginRef::Ref(id) | PluginRef::Known(id) => id,
            PluginRef::Follows { alias, .. } => alias,
        }
    }

    /// The alias a schedule's fire follows (for the fire ledger).
    pub fn follows(&self) -> Option<&str> {
        match self {
            PluginRef::Follows { alias, .. } => Some(alias),
            _ => None,
        }
    }

    /// The id a record of work that does not run names: the plugin, the
    /// one a followed alias pointed to last, or the reference as written.
    pub(super) fn fallback_id(&self) -> &str {
        match self {
            PluginRef::Follows { last, .. } => last,
            other => other.text(),
        }
    }
}

/// A resolved reference: the plugin version, and the alias followed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub plugin_id: String,
    /// `name@alias` when the reference follows an alias (including
    /// `name@latest`); none when it names one version.
    pub follows: Option<String>,
}

impl Node {
    /// What `plugin` names in `tenant`, or `None` if it names nothing. An id
    /// found in the store is trusted for [`PLUGIN_SEEN_TTL`], so a stream of
    /// submissions costs the store one plugin read a second. A plugin deleted
    /// through this node is forgotten at once; one deleted through another
    /// node may take runs for that second, which then end `invalid_plugin`.
    pub async fn resolve_plugin(
        &self,
        tenant: &str,
        plugin: &PluginRef,
    ) -> Result<Option<Resolved>, StoreError> {
        let store = &self.inner.store;
        let id = match plugin {
            PluginRef::Known(id) => id,
            PluginRef::Ref(reference)
            | PluginRef::Follows {
                alias: reference, ..
            } => {
                return Ok(store
                    .resolve_plugin(tenant, reference)
                    .await?
                    .map(|r| Resolved {
                        plugin_id: r.plugin.id,
                        follows: r.follows,
                    }));
            }
            PluginRef::Id(id) => {
                if !self.seen_recently(tenant, id) {
                    if store.get_plugin(tenant, id).await?.is_none() {
                        return Ok(None);
                    }
                    self.inner.intake.seen(tenant, id);
                }
                id
            }
        };
        Ok(Some(Resolved {
            plugin_id: id.clone(),
            follows: None,
        }))
    }

    fn seen_recently(&self, tenant: &str, id: &str) -> bool {
        self.inner
            .intake
            .seen_at(tenant, id)
            .is_some_and(|at| at.elapsed() < PLUGIN_SEEN_TTL)
    }
}

/// When this node last found each plugin in the store: id → (tenant, when).
pub(crate) type PluginsSeen = lru::LruCache<String, (String, Instant)>;
