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

/// A failed kv operation, reported to the plugin as a retryable error string.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
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
    async fn kv_set(&self, ns: &KvNamespace, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Returns whether the key existed.
    async fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, KvError>;
}

/// Checks a key and value against the limits before any store sees them.
pub(crate) fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
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

    async fn kv_set(&self, ns: &KvNamespace, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.entries()
            .insert((ns.clone(), key.to_owned()), value.to_vec());
        Ok(())
    }

    async fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, KvError> {
        Ok(self
            .entries()
            .remove(&(ns.clone(), key.to_owned()))
            .is_some())
    }
}
