//! The fire ledger and plugin aliases: the rules, written once for both
//! backends.
//!
//! Every fate of a fire is one insert-if-absent under its unique fire key
//! (`schedule@fire-ms`): the row that wins is the fire's record, and whoever
//! loses adopts it ([`FireDecided::Theirs`]). So racing nodes agree on each
//! fire's fate, a fire cannot be both run and skipped, and the executions
//! and the ledger never disagree (they are the same rows).

use super::backend::{FireFilter, PageQuery, PluginFilter};
use super::{Page, PageRequest, Store, StoreError};
use chrono::{DateTime, Utc};
use taskhost_model::{
    Execution, ExecutionStatus, FireCounts, FireFate, FireReason, FireRecord, FireWas, LATEST,
    PluginAlias, PluginRecord,
};

/// Most aliases one plugin name may have.
pub const MAX_ALIASES: usize = 100;

/// Who decided a fire.
#[derive(Debug, Clone)]
pub enum FireDecided {
    /// This call's row was inserted: it is the fire's record.
    Ours(Box<Execution>),
    /// The fire had a record already (another node, or an earlier pass):
    /// that record stands.
    Theirs,
}

/// The answer to [`Store::move_alias`].
#[derive(Debug, Clone)]
pub enum AliasMove {
    Moved(PluginAlias),
    /// The name has no such version.
    NoSuchVersion,
    /// The alias may not be used (`latest`, or a version's name).
    Refused(String),
}

/// What a plugin reference (`id`, `name@version`, `name@alias`) names.
#[derive(Debug, Clone)]
pub struct ResolvedPlugin {
    pub plugin: PluginRecord,
    /// `name@alias` when the reference follows an alias (including
    /// `name@latest`); none when it pins one version.
    pub follows: Option<String>,
}

impl Store {
    /// Records one fire: inserts `row` unless the fire has a record. With
    /// [`FireDecided::Theirs`] the record that stands is another's (read it
    /// with [`Store::fire_record`] if needed: the hot path does not).
    pub async fn decide_fire(&self, row: &Execution) -> Result<FireDecided, StoreError> {
        Ok(if self.backend.execution_insert(row).await? {
            FireDecided::Ours(Box::new(row.clone()))
        } else {
            FireDecided::Theirs
        })
    }

    /// Records many fires at once, each insert-if-absent, and moves the
    /// cursors of their schedules (each written only if still as read); see
    /// [`ScheduleStore::fires_record`](crate::ScheduleStore::fires_record).
    pub async fn record_fires(
        &self,
        rows: &[Execution],
        moves: &[taskhost_model::Schedule],
    ) -> Result<crate::PassWritten, StoreError> {
        if rows.is_empty() && moves.is_empty() {
            return Ok(crate::PassWritten::default());
        }
        self.backend.fires_record(rows, moves).await
    }

    /// The record of one fire.
    pub async fn fire_record(
        &self,
        tenant: &str,
        schedule_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Execution>, StoreError> {
        let filter = FireFilter {
            since: Some(at),
            until: Some(at + chrono::Duration::milliseconds(1)),
            fate: None,
            at: vec![at],
        };
        let query = PageQuery {
            before: None,
            limit: 1,
        };
        let rows = self
            .backend
            .fires_list(tenant, schedule_id, &filter, &query)
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The rows of a schedule's fires (newest first), at most `limit`.
    pub async fn fire_rows(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        limit: u32,
    ) -> Result<Vec<Execution>, StoreError> {
        let query = PageQuery {
            before: None,
            limit,
        };
        self.backend
            .fires_list(tenant, schedule_id, filter, &query)
            .await
    }

    /// A schedule's fire ledger, newest fire first. The cursor is a fire
    /// time in Unix milliseconds.
    pub async fn list_fires(
        &self,
        tenant: &str,
        schedule_id: &str,
        filter: &FireFilter,
        request: &PageRequest,
    ) -> Result<Page<FireRecord>, StoreError> {
        let query = request.query();
        let rows = self
            .backend
            .fires_list(tenant, schedule_id, filter, &query)
            .await?;
        let next = (rows.len() as u32 == query.limit)
            .then(|| rows.last().and_then(|e| e.fire_time))
            .flatten()
            .map(|t| t.timestamp_millis().to_string());
        let items = rows.iter().filter_map(FireRecord::of).collect();
        Ok(Page { items, next })
    }

    /// Counts of a schedule's fires since `since`, by fate and reason.
    pub async fn fire_counts(
        &self,
        schedule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<FireCounts, StoreError> {
        let mut counts = FireCounts::default();
        for (fate, reason, n) in self.backend.fires_count(schedule_id, since).await? {
            if let Some(fate) = FireFate::parse(&fate) {
                counts.add(fate, reason.as_deref().and_then(FireReason::parse), n);
            }
        }
        Ok(counts)
    }

    /// Turns the record of a fire that did not run (`skipped`, `missed`) into
    /// `run`, in place (compare-and-swap): the record keeps its id and what
    /// it was (`fire.was`). `None` if it is no longer such a record (another
    /// backfill ran it first).
    pub async fn run_skipped_fire(
        &self,
        record_id: &str,
        run: Execution,
    ) -> Result<Option<Execution>, StoreError> {
        self.modify_execution(record_id, move |e| {
            if e.status != ExecutionStatus::Skipped {
                return false;
            }
            let mut new = run.clone();
            new.id = e.id.clone();
            new.version = e.version;
            if let (Some(info), Some(was)) = (new.fire.as_mut(), e.fire.take()) {
                info.was = Some(FireWas {
                    fate: was.fate,
                    reason: was.reason,
                    detail: was.detail,
                    decided_at: e.created_at,
                });
            }
            *e = new;
            true
        })
        .await
    }

    /// What a plugin reference names in `tenant`: `name@latest` (the newest
    /// upload), `name@alias` (where the alias points), or `name@version`
    /// (that version, pinned). `None` if it names nothing.
    pub async fn resolve_plugin(
        &self,
        tenant: &str,
        reference: &str,
    ) -> Result<Option<ResolvedPlugin>, StoreError> {
        let Some((name, label)) = reference.split_once('@') else {
            return Ok(None);
        };
        let follows = Some(reference.to_owned());
        if label == LATEST {
            return Ok(self
                .find_plugin(tenant, name, None)
                .await?
                .map(|plugin| ResolvedPlugin { plugin, follows }));
        }
        if let Some(alias) = self.backend.alias_get(tenant, name, label).await? {
            return Ok(self
                .get_plugin(tenant, &alias.plugin_id)
                .await?
                .map(|plugin| ResolvedPlugin { plugin, follows }));
        }
        Ok(self
            .find_plugin(tenant, name, Some(label))
            .await?
            .map(|plugin| ResolvedPlugin {
                plugin,
                follows: None,
            }))
    }

    /// The plugin `name` at `version`, or its newest upload.
    pub async fn find_plugin(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<PluginRecord>, StoreError> {
        let filter = PluginFilter {
            name: Some(name.to_owned()),
            version: version.map(str::to_owned),
        };
        let query = PageQuery {
            before: None,
            limit: 1,
        };
        let found = self.backend.plugin_list(tenant, &filter, &query).await?;
        Ok(found.into_iter().next())
    }

    /// Points `name@alias` at `name`'s `version`.
    pub async fn move_alias(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
        version: &str,
        by: &str,
    ) -> Result<AliasMove, StoreError> {
        if alias == LATEST {
            return Ok(AliasMove::Refused(format!(
                "{name}@{LATEST} is always the newest upload; it cannot be moved"
            )));
        }
        if self.find_plugin(tenant, name, Some(alias)).await?.is_some() {
            return Ok(AliasMove::Refused(format!(
                "{name} has a version {alias:?}, so {name}@{alias} names that version; choose another alias"
            )));
        }
        let Some(plugin) = self.find_plugin(tenant, name, Some(version)).await? else {
            return Ok(AliasMove::NoSuchVersion);
        };
        if self.backend.alias_get(tenant, name, alias).await?.is_none()
            && self.backend.alias_list(tenant, name).await?.len() >= MAX_ALIASES
        {
            return Ok(AliasMove::Refused(format!(
                "{name} has {MAX_ALIASES} aliases, the most a name may have; delete one first"
            )));
        }
        let record = PluginAlias {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            alias: alias.to_owned(),
            plugin_id: plugin.id,
            version: plugin.version,
            updated_at: self.now(),
            updated_by: by.to_owned(),
        };
        if !self.backend.alias_put(&record).await? {
            // The version was deleted meanwhile.
            return Ok(AliasMove::NoSuchVersion);
        }
        Ok(AliasMove::Moved(record))
    }

    /// Removes `name@alias`; refused (`InUse`) while a schedule follows it.
    /// False if there is no such alias.
    pub async fn delete_alias(
        &self,
        tenant: &str,
        name: &str,
        alias: &str,
    ) -> Result<bool, StoreError> {
        let followed = format!("{name}@{alias}");
        let filter = super::ScheduleFilter {
            plugin_alias: Some(followed.clone()),
            ..super::ScheduleFilter::default()
        };
        let query = PageQuery {
            before: None,
            limit: 1,
        };
        if let Some(s) = self
            .backend
            .schedule_list(tenant, &filter, &query)
            .await?
            .first()
        {
            return Err(StoreError::InUse(format!(
                "schedule {:?} follows {followed}",
                s.name
            )));
        }
        self.backend.alias_delete(tenant, name, alias).await
    }

    /// The aliases of `name` in `tenant`.
    pub async fn list_aliases(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginAlias>, StoreError> {
        self.backend.alias_list(tenant, name).await
    }

    /// Whether `name@label` is an alias (so an upload may not take it as a version).
    pub async fn alias_exists(
        &self,
        tenant: &str,
        name: &str,
        label: &str,
    ) -> Result<bool, StoreError> {
        Ok(label == LATEST || self.backend.alias_get(tenant, name, label).await?.is_some())
    }
}
