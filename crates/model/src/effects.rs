//! A run's effects, held until its result is written.
//!
//! A run's kv writes are not written as the plugin makes them: [`HeldKv`]
//! keeps them, answering the run's own reads from them, and they are
//! committed with the run's result ([`KvEffects`]), fenced by its lease: in
//! its transaction on SQLite, right after it on MongoDB (see the store). So a run whose result could not be saved — its
//! lease lapsed during a store outage, and it runs again — leaves none of
//! its writes behind, and the next try sees the state as it was.
//!
//! Quotas are checked as the plugin writes (against the tenant's usage and
//! what the run holds already), so a plugin still gets its refusal at once;
//! the commit checks them again, as other runs may have written meanwhile.

use crate::kv::{KvError, KvNamespace, KvQuota, KvStore, check};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The kv writes of one run, to commit with its result: each key's last
/// value, `None` for a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvEffects {
    /// Whose state (the run's namespace); `None` if it wrote nothing.
    pub namespace: Option<KvNamespace>,
    pub writes: BTreeMap<String, Option<Vec<u8>>>,
    /// The tenant's quota, checked again at the commit.
    pub quota: Option<KvQuota>,
}

impl KvEffects {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// What the run holds, and the usage change it would make.
#[derive(Default)]
struct Held {
    effects: KvEffects,
    /// Keys and bytes the held writes add to the tenant's usage.
    delta: (i64, i64),
}

/// A run's view of kv: the store's state under the run's own writes.
pub struct HeldKv {
    store: Arc<dyn KvStore>,
    held: Mutex<Held>,
}

impl HeldKv {
    pub fn new(store: Arc<dyn KvStore>) -> HeldKv {
        HeldKv {
            store,
            held: Mutex::default(),
        }
    }

    /// The writes to commit with the result (and forgets them).
    pub fn take(&self) -> KvEffects {
        std::mem::take(&mut self.lock().effects)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The held value of `key`: `Some(None)` if the run deleted it.
    fn held(&self, ns: &KvNamespace, key: &str) -> Result<Option<Option<Vec<u8>>>, KvError> {
        let held = self.lock();
        match &held.effects.namespace {
            Some(mine) if mine != ns => Err(KvError::Backend(
                "a run's kv is one plugin's namespace".into(),
            )),
            _ => Ok(held.effects.writes.get(key).cloned()),
        }
    }

    /// The size (key and value) `key` has now, as the run sees it.
    async fn size(&self, ns: &KvNamespace, key: &str) -> Result<Option<u64>, KvError> {
        let value = match self.held(ns, key)? {
            Some(value) => value,
            None => self.store.kv_get(ns, key).await?,
        };
        Ok(value.map(|v| (key.len() + v.len()) as u64))
    }

    fn hold(&self, ns: &KvNamespace, key: &str, value: Option<Vec<u8>>, change: (i64, i64)) {
        let mut held = self.lock();
        held.effects.namespace = Some(ns.clone());
        held.effects.writes.insert(key.to_owned(), value);
        held.delta = (held.delta.0 + change.0, held.delta.1 + change.1);
    }
}

#[async_trait::async_trait]
impl KvStore for HeldKv {
    async fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self.held(ns, key)? {
            Some(value) => Ok(value),
            None => self.store.kv_get(ns, key).await,
        }
    }

    async fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: Option<KvQuota>,
    ) -> Result<(), KvError> {
        check(key, Some(value))?;
        let old = self.size(ns, key).await?;
        let usage = match quota {
            Some(_) => {
                let (keys, bytes) = self.store.kv_usage(&ns.tenant).await?;
                let delta = self.lock().delta;
                let add = |n: u64, d: i64| n.saturating_add_signed(d);
                Some((add(keys, delta.0), add(bytes, delta.1)))
            }
            None => None,
        };
        let change = KvQuota::admit(quota, usage, old, (key.len() + value.len()) as u64)?;
        self.hold(ns, key, Some(value.to_vec()), change);
        self.lock().effects.quota = quota;
        Ok(())
    }

    async fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, KvError> {
        let Some(old) = self.size(ns, key).await? else {
            return Ok(false);
        };
        self.hold(ns, key, None, (-1, -(old as i64)));
        Ok(true)
    }

    async fn kv_usage(&self, tenant: &str) -> Result<(u64, u64), KvError> {
        self.store.kv_usage(tenant).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    /// A tiny executor for these tests (their futures never wait).
    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn a_run_sees_its_writes_and_the_store_sees_none_until_committed() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryKv::default());
        let ns = KvNamespace::new("acme", "p");
        block(store.kv_set(&ns, "kept", b"old", None)).expect("set");
        let held = HeldKv::new(store.clone());
        block(held.kv_set(&ns, "count", b"1", None)).expect("set");
        assert!(block(held.kv_delete(&ns, "kept")).expect("delete"));
        assert!(!block(held.kv_delete(&ns, "kept")).expect("gone"));
        assert_eq!(
            block(held.kv_get(&ns, "count")).expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(block(held.kv_get(&ns, "kept")).expect("get"), None);
        // The store is untouched.
        assert_eq!(block(store.kv_get(&ns, "count")).expect("get"), None);
        assert_eq!(
            block(store.kv_get(&ns, "kept")).expect("get"),
            Some(b"old".to_vec())
        );
        let effects = held.take();
        assert_eq!(effects.namespace, Some(ns));
        assert_eq!(effects.writes.len(), 2);
        assert_eq!(effects.writes["kept"], None);
    }

    #[test]
    fn quotas_count_what_the_run_holds() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryKv::default());
        let ns = KvNamespace::new("acme", "p");
        let quota = Some(KvQuota {
            keys: 2,
            bytes: 1000,
        });
        let held = HeldKv::new(store);
        block(held.kv_set(&ns, "a", b"1", quota)).expect("first");
        block(held.kv_set(&ns, "b", b"1", quota)).expect("second");
        block(held.kv_set(&ns, "a", b"2", quota)).expect("a replacement adds no key");
        let refused = block(held.kv_set(&ns, "c", b"1", quota));
        assert!(matches!(refused, Err(KvError::Quota(_))), "{refused:?}");
        assert!(block(held.kv_delete(&ns, "b")).expect("delete"));
        block(held.kv_set(&ns, "c", b"1", quota)).expect("room again");
    }
}
