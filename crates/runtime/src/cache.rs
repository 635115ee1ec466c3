//! Compiled-artifact caching, so a node never compiles the same plugin twice.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds; loading
//! a precompiled artifact takes well under one. Artifacts are keyed by the
//! sha256 of the wasm *and* a hash of everything in the engine that affects
//! compiled code (wasmtime version, `Config`, target), so an artifact from an
//! incompatible engine is never loaded: it is simply a cache miss.
//!
//! Trust: artifacts are native code and are loaded without verification, so an
//! [`ArtifactCache`] must only hold what this host wrote itself.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;
use wasmtime::Engine;

/// Where precompiled artifacts are kept between compilations.
pub trait ArtifactCache: Send + Sync {
    /// The artifact stored under `key`, if any.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores an artifact; failures are not fatal (the next load recompiles).
    fn put(&self, key: &str, artifact: &[u8]);
}

/// Keeps artifacts in memory, for the life of the process.
#[derive(Default)]
pub struct MemoryArtifacts(Mutex<HashMap<String, Vec<u8>>>);

impl ArtifactCache for MemoryArtifacts {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn put(&self, key: &str, artifact: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), artifact.to_vec());
    }
}

/// Keeps artifacts as files `<dir>/<key>.cwasm`.
pub struct DirArtifacts {
    dir: PathBuf,
    /// Bytes of artifacts kept; the least recently used go first.
    max_bytes: u64,
}

/// Bytes of compiled artifacts a folder keeps unless told otherwise.
pub const DEFAULT_ARTIFACT_BYTES: u64 = 2 << 30;

impl DirArtifacts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirArtifacts::with_limit(dir, DEFAULT_ARTIFACT_BYTES)
    }

    /// A folder that keeps at most `max_bytes` of artifacts.
    pub fn with_limit(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        DirArtifacts {
            dir: dir.into(),
            max_bytes,
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Removes the least recently used artifacts (by modification time,
    /// which `get` refreshes) until the folder is within its limit.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}

impl ArtifactCache for DirArtifacts {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        // Recently used: the last to be evicted.
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        Some(bytes)
    }

    fn put(&self, key: &str, artifact: &[u8]) {
        // Write to a temporary name and rename, so a reader never sees half a file.
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let result = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, artifact))
            .and_then(|()| std::fs::rename(&tmp, self.path(key)));
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not cache a compiled plugin");
            let _ = std::fs::remove_file(&tmp);
        }
        self.evict();
    }
}

/// Hex sha256 of a plugin's bytes: its identity everywhere in taskhost.
pub fn sha256_hex(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// A short hex digest of what makes compiled code compatible with `engine`.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    // Feed the engine's compatibility hash into sha256, which (unlike
    // `DefaultHasher`) is stable across processes and Rust releases.
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifact_folder_keeps_to_its_limit_dropping_the_least_recently_used() {
        let dir =
            std::env::temp_dir().join(format!("taskhost-artifacts-{}", taskhost_model::new_id()));
        let cache = DirArtifacts::with_limit(&dir, 250);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        cache.put("a", &[0; 100]);
        cache.put("b", &[0; 100]);
        for key in ["a", "b"] {
            let file = std::fs::File::options()
                .append(true)
                .open(cache.path(key))
                .expect("open");
            file.set_modified(old).expect("age it");
        }
        assert!(cache.get("a").is_some(), "a is used again");
        cache.put("c", &[0; 100]);
        assert!(cache.get("b").is_none(), "the least recently used went");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
