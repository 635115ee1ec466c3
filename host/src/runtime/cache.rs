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
}

impl DirArtifacts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirArtifacts { dir: dir.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }
}

impl ArtifactCache for DirArtifacts {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
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
