//! Per-plugin key-value state, behind a trait so any store can back it.
//!
//! Plugins see `kv-get`, `kv-set` and `kv-delete`. The runtime checks sizes and
//! scopes every call to the run's [`KvNamespace`] (tenant + plugin name); a
//! [`KvStore`] only stores bytes. [`MemoryKv`] keeps them in memory, for
//! `taskhost run` and tests; the durable stores implement the same trait.

use std::collections::HashMap;
use std::sync::Mutex;

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value a plugin may store, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Whose state a run sees: keys never cross tenants or plugins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvNamespace {
    pub tenant: String,
    pub plugin: String,
}

impl KvNamespace {
    pub fn new(tenant: impl Into<String>, plugin: impl Into<String>) -> Self {
        KvNamespace {
            tenant: tenant.into(),
            plugin: plugin.into(),
        }
    }
}

/// How much kv state a tenant may keep, over all its plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Keys at most.
    pub keys: u64,
    /// Bytes of keys and values at most.
    pub bytes: u64,
}

impl KvQuota {
    /// Checks a write against the tenant's `usage` (keys, bytes): `old` is
    /// the size (key + value) of the entry it replaces, if any, `new` its own.
    /// Returns the change to the usage (keys, bytes).
    pub fn admit(
        quota: Option<KvQuota>,
        usage: Option<(u64, u64)>,
        old: Option<u64>,
        new: u64,
    ) -> Result<(i64, i64), crate::quota::QuotaExceeded> {
        use crate::quota::QuotaExceeded;
        let added_key = u64::from(old.is_none());
        if let (Some(quota), Some((keys, bytes))) = (quota, usage) {
            QuotaExceeded::check(crate::quota::QuotaKind::KvKeys, quota.keys, keys, added_key)?;
            let others = bytes.saturating_sub(old.unwrap_or(0));
            QuotaExceeded::check(crate::quota::QuotaKind::KvBytes, quota.bytes, others, new)?;
        }
        Ok((added_key as i64, new as i64 - old.unwrap_or(0) as i64))
    }
}

/// A failed kv operation, reported to the plugin as an error string.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The write would take the tenant past a kv quota; nothing was written.
    #[error("kv write refused: {0}")]
    Quota(#[from] crate::quota::QuotaExceeded),
    #[error("kv key is {0} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    #[error("kv value is {0} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLarge(usize),
    #[error("kv store unavailable: {0}")]
    Backend(String),
}

/// Storage for plugin key-value state.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    async fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value` under `key`, unless that would take the tenant past
    /// `quota` (checked in the same write): then [`KvError::Quota`].
    async fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<(), KvError>;
    /// Returns whether the key existed.
    async fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, KvError>;
    /// The tenant's kv keys and bytes (what its quota counts).
    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64), KvError>;
}

/// Checks a key and value against the limits before any store sees them.
pub fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLong(key.len()));
    }
    match value {
        Some(v) if v.len() > MAX_VALUE_BYTES => Err(KvError::ValueTooLarge(v.len())),
        _ => Ok(()),
    }
}

/// Key-value state in process memory; gone when the process exits.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<(KvNamespace, String), Vec<u8>>>,
}

impl MemoryKv {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(KvNamespace, String), Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl KvStore for MemoryKv {
    async fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.entries().get(&(ns.clone(), key.to_owned())).cloned())
    }

    async fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<(), KvError> {
        let mut entries = self.entries();
        if let Some(quota) = quota {
            let mine = entries.iter().filter(|((n, _), _)| n.tenant == ns.tenant);
            let (mut keys, mut bytes) = (0u64, 0u64);
            for ((_, k), v) in mine {
                keys += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            let old = entries
                .get(&(ns.clone(), key.to_owned()))
                .map(|v| (key.len() + v.len()) as u64);
            let new = (key.len() + value.len()) as u64;
            use crate::quota::QuotaExceeded;
            QuotaExceeded::check(
                crate::quota::QuotaKind::KvKeys,
                quota.keys,
                keys,
                u64::from(old.is_none()),
            )?;
            QuotaExceeded::check(
                crate::quota::QuotaKind::KvBytes,
                quota.bytes,
                bytes - old.unwrap_or(0),
                new,
            )?;
        }
        entries.insert((ns.clone(), key.to_owned()), value.to_vec());
        Ok(())
    }

    async fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, KvError> {
        Ok(self
            .entries()
            .remove(&(ns.clone(), key.to_owned()))
            .is_some())
    }

    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64), KvError> {
        let entries = self.entries();
        let mine = entries.iter().filter(|((n, _), _)| n.tenant == tenant);
        Ok(mine.fold((0, 0), |(keys, bytes), ((_, k), v)| {
            (keys + 1, bytes + (k.len() + v.len()) as u64)
        }))
    }
}
