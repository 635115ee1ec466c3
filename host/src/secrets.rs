//! Tenant secrets: sealed at rest, opened only for the runs that name them,
//! and scrubbed from everything a run leaves behind.
//!
//! A value is sealed with XChaCha20-Poly1305 under the node's secrets key (an
//! operator's file or variable; in development a key made in the data folder,
//! mode 0600). Each sealing takes a fresh random 24-byte nonce, and the
//! tenant and secret name are the associated data: a sealed value copied to
//! another tenant's or name's row does not open. What the store keeps is
//! `v1 ‖ nonce ‖ ciphertext+tag`; it never sees the value.
//!
//! A run reads a secret through the `secret-get` host call, and only the
//! secrets its schedule or request names ([`MAX_SECRETS_PER_RUN`] at most).
//! Before a run's outcome is stored, every value it was given is replaced in
//! its output, error, logs, stdout, stderr and progress note by
//! `[redacted:NAME]` ([`scrub`]).

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};

/// Most secrets one run may name.
pub const MAX_SECRETS_PER_RUN: usize = 32;
/// Largest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 << 10;
/// Most secrets a tenant may keep.
pub const MAX_SECRETS_PER_TENANT: u64 = 1000;

const FORMAT: &[u8; 2] = b"v1";
const NONCE_BYTES: usize = 24;

/// Why a secret could not be sealed, opened or named.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secrets key must be 32 bytes, written as 64 hex digits or 44 base64 characters; \
         make one with `openssl rand -hex 32`"
    )]
    BadKey,
    #[error("a sealed secret could not be opened: it was sealed under another key, or changed")]
    Unopenable,
    #[error("invalid secret name {0:?}: use 1 to 128 letters, digits, '_', '-' or '.'")]
    BadName(String),
}

/// The key secrets are sealed under.
#[derive(Clone)]
pub struct SecretKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads a key written as 64 hex digits or as base64 (surrounding space
    /// ignored).
    pub fn parse(text: &str) -> Result<SecretKey, SecretError> {
        use base64::Engine;
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .filter(|b| b.len() == 32)
            .ok_or(SecretError::BadKey)?;
        XChaCha20Poly1305::new_from_slice(&bytes)
            .map(SecretKey)
            .map_err(|_| SecretError::BadKey)
    }

    /// A new random key, as 64 hex digits.
    pub fn generate() -> String {
        hex::encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// Seals `value` for `tenant`'s secret `name`.
    pub fn seal(&self, tenant: &str, name: &str, value: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(tenant, name);
        // Encryption fails only for messages past the cipher's limit
        // (256 GiB), far above MAX_SECRET_BYTES.
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(FORMAT.len() + NONCE_BYTES + sealed.len());
        out.extend_from_slice(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`SecretKey::seal`] made for the same tenant and name.
    pub fn open(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        let rest = sealed
            .strip_prefix(FORMAT.as_slice())
            .filter(|r| r.len() > NONCE_BYTES)
            .ok_or(SecretError::Unopenable)?;
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let aad = associated(tenant, name);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Unopenable)
    }
}

fn associated(tenant: &str, name: &str) -> Vec<u8> {
    format!("taskhost-secret:v1:{tenant}/{name}").into_bytes()
}

/// Checks a secret's name.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SecretError::BadName(name.to_owned()))
    }
}

/// Replaces every occurrence of each value in `text` by `[redacted:NAME]`,
/// also in its JSON-escaped form (as it appears inside JSON strings).
/// Returns whether anything was replaced.
pub fn scrub(text: &mut String, secrets: &[(String, String)]) -> bool {
    let mut changed = false;
    for (name, value) in secrets {
        if value.is_empty() {
            continue;
        }
        let mark = format!("[redacted:{name}]");
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for form in [value.as_str(), escaped] {
            if !form.is_empty() && text.contains(form) {
                *text = text.replace(form, &mark);
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_tenant_and_name() {
        let key = SecretKey::parse(&SecretKey::generate()).expect("key");
        let sealed = key.seal("acme", "token", b"s3cr3t");
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(key.open("acme", "token", &sealed).expect("open"), b"s3cr3t");
        assert!(key.open("globex", "token", &sealed).is_err());
        assert!(key.open("acme", "other", &sealed).is_err());
        let other = SecretKey::parse(&SecretKey::generate()).expect("key");
        assert!(other.open("acme", "token", &sealed).is_err());
        assert_ne!(sealed, key.seal("acme", "token", b"s3cr3t"), "fresh nonces");
        assert!(SecretKey::parse("short").is_err());
    }

    #[test]
    fn scrubs_raw_and_json_escaped_values() {
        let secrets = vec![("pw".to_owned(), "a\"b\\c".to_owned())];
        let mut json = serde_json::to_string(&serde_json::json!({"leak": "x a\"b\\c y"})).unwrap();
        assert!(scrub(&mut json, &secrets));
        assert_eq!(json, r#"{"leak":"x [redacted:pw] y"}"#);
        let mut raw = "raw a\"b\\c".to_owned();
        scrub(&mut raw, &secrets);
        assert_eq!(raw, "raw [redacted:pw]");
        assert!(check_name("API_TOKEN.v2-x").is_ok());
        assert!(check_name("no spaces").is_err());
        assert!(check_name("").is_err());
    }
}
