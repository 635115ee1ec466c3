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
//! `[redacted:NAME]` ([`Scrubber`]).

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
pub struct SecretKey(XChaCha20Poly1305, [u8; 32]);

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
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        // Other keys come from this one by HMAC, each for one purpose, so
        // the sealing key itself is never used for anything else.
        Ok(SecretKey(
            cipher,
            hmac_sha256(&bytes, b"taskhost: derived keys"),
        ))
    }

    /// The secret `tenant`'s webhooks are signed with (HMAC-SHA256, per the
    /// Standard Webhooks conventions): derived from this key, so every node
    /// sharing the key signs alike and nothing more is stored.
    pub fn webhook_secret(&self, tenant: &str) -> [u8; 32] {
        hmac_sha256(&self.1, format!("webhook-signing:{tenant}").as_bytes())
    }

    /// The secret of `tenant`'s hook `id` under `salt` (see [`crate::hook`]):
    /// derived like [`SecretKey::webhook_secret`], so nothing secret is stored.
    pub fn hook_secret(&self, tenant: &str, id: &str, salt: &str) -> [u8; 32] {
        hmac_sha256(&self.1, format!("hook:{tenant}/{id}/{salt}").as_bytes())
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

/// What [`check_name`] allows, as the API document declares it.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";

/// A secret's name: 1-128 of letters, digits, `_`, `-` and `.`.
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

/// Most bytes scrubbing may add to one run's outcome (marks are longer than
/// short values). Past it, a value is masked with `*`s of its own length, so
/// a one-byte secret in 4 MiB of output cannot grow it a hundredfold.
pub const MAX_SCRUB_GROWTH: usize = 64 << 10;

/// Finds a run's secret values — raw, and JSON-escaped as they appear inside
/// JSON strings — in one pass over a text, and replaces each by
/// `[redacted:NAME]`. Built once per run.
pub struct Scrubber {
    finder: aho_corasick::AhoCorasick,
    /// The mark of each pattern, by pattern index.
    marks: Vec<String>,
    /// Bytes the marks may still add (see [`MAX_SCRUB_GROWTH`]).
    growth_left: usize,
}

impl Scrubber {
    /// A scrubber for `(name, value)` pairs; `None` if there is nothing to find.
    pub fn new(secrets: &[(String, String)]) -> Option<Scrubber> {
        let mut patterns = Vec::new();
        let mut marks = Vec::new();
        for (name, value) in secrets.iter().filter(|(_, v)| !v.is_empty()) {
            let quoted = serde_json::to_string(value).unwrap_or_default();
            let escaped = &quoted[1..quoted.len() - 1];
            for form in [value.as_str(), escaped] {
                patterns.push(form.to_owned());
                marks.push(format!("[redacted:{name}]"));
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let finder = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        Some(Scrubber {
            finder,
            marks,
            growth_left: MAX_SCRUB_GROWTH,
        })
    }

    /// `bytes` with every value replaced, or `None` if none occurs.
    pub fn bytes(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut found = self.finder.find_iter(bytes).peekable();
        found.peek()?;
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for m in found {
            out.extend_from_slice(&bytes[at..m.start()]);
            let mark = self.marks[m.pattern().as_usize()].as_bytes();
            let grows = mark.len().saturating_sub(m.len());
            if grows <= self.growth_left {
                self.growth_left -= grows;
                out.extend_from_slice(mark);
            } else {
                out.resize(out.len() + m.len(), b'*');
            }
            at = m.end();
        }
        out.extend_from_slice(&bytes[at..]);
        Some(out)
    }

    /// Replaces every value in `text`. Returns whether anything was replaced.
    pub fn text(&mut self, text: &mut String) -> bool {
        match self.bytes(text.as_bytes()) {
            Some(scrubbed) => {
                // Values and marks are whole UTF-8 strings, so the result is too.
                *text = String::from_utf8_lossy(&scrubbed).into_owned();
                true
            }
            None => false,
        }
    }
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Mac, SimpleHmac};
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Equal, in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        let secrets = vec![("pw".to_owned(), "a\"b\\c\"".to_owned())];
        let mut scrubber = Scrubber::new(&secrets).expect("patterns");
        let mut json =
            serde_json::to_string(&serde_json::json!({"leak": "x a\"b\\c\" y"})).unwrap();
        assert!(scrubber.text(&mut json));
        assert_eq!(json, r#"{"leak":"x [redacted:pw] y"}"#);
        let mut raw = "raw a\"b\\c\"".to_owned();
        scrubber.text(&mut raw);
        assert_eq!(raw, "raw [redacted:pw]");
        let mut clean = "nothing here".to_owned();
        assert!(!scrubber.text(&mut clean));
        assert!(check_name("API_TOKEN.v2-x").is_ok());
        assert!(check_name("no spaces").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn scrubbing_grows_a_text_by_a_bounded_amount() {
        let secrets = vec![("A_LONG_SECRET_NAME".to_owned(), "a".to_owned())];
        let mut scrubber = Scrubber::new(&secrets).expect("patterns");
        let flood = vec![b'a'; 1 << 20];
        let scrubbed = scrubber.bytes(&flood).expect("found");
        assert!(scrubbed.len() <= flood.len() + MAX_SCRUB_GROWTH);
        let text = String::from_utf8(scrubbed).expect("utf-8");
        let mark = "[redacted:A_LONG_SECRET_NAME]";
        assert!(
            text.starts_with(mark) && text.ends_with('*'),
            "marks, then masks"
        );
        assert!(
            text.replace(mark, "").replace('*', "").is_empty(),
            "every occurrence is hidden"
        );
    }
}
