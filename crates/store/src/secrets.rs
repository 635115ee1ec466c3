//! Tenant secrets on [`Store`]: sealed before they are written, opened only
//! for a run that names them (see [`crate::secrets`]).

use super::{Store, StoreError};
use std::collections::BTreeMap;
use taskhost_model::SecretInfo;
use taskhost_model::secrets::{MAX_SECRETS_PER_TENANT, SecretKey};

impl Store {
    /// Seals `value` under `key` and stores it as `tenant`'s secret `name`.
    pub async fn put_secret(
        &self,
        key: &SecretKey,
        tenant: &str,
        name: &str,
        value: &[u8],
    ) -> Result<SecretInfo, StoreError> {
        let sealed = key.seal(tenant, name, value);
        self.backend
            .secret_put(tenant, name, &sealed, self.now(), MAX_SECRETS_PER_TENANT)
            .await
    }

    pub async fn list_secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>, StoreError> {
        self.backend.secret_list(tenant).await
    }

    pub async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.backend.secret_delete(tenant, name).await
    }

    /// Opens the secrets `names` of `tenant` for a run: each name maps to its
    /// value, or to why the run cannot have it (absent, not opened by this
    /// key, not UTF-8). A store error is the caller's to handle.
    pub async fn open_secrets(
        &self,
        key: Option<&SecretKey>,
        tenant: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, Result<String, String>>, StoreError> {
        let mut opened = BTreeMap::new();
        for name in names {
            let value = match (self.backend.secret_get(tenant, name).await?, key) {
                (None, _) => Err(format!("there is no secret {name:?}")),
                (Some(_), None) => Err("this node has no secrets key".to_owned()),
                (Some(sealed), Some(key)) => key
                    .open(tenant, name, &sealed)
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        String::from_utf8(v)
                            .map_err(|_| format!("secret {name:?} is not UTF-8 text"))
                    }),
            };
            opened.insert(name.clone(), value);
        }
        Ok(opened)
    }
}
