//! Python and JavaScript plugins, built from source for the tests.
//!
//! The tools are pinned by their SDKs (`sdk/python/requirements.txt`,
//! `sdk/js/package-lock.json`) and installed from PyPI and npm by
//! `scripts/plugin-tools.sh`, once per test process. Without them (no
//! registry, no python3 or node) a test is skipped with a notice, except
//! under `CI=true`, where that is a failure.

use crate::repo_root;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// A plugin language other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Python,
    Js,
}

impl Lang {
    /// The suffix of the example plugins' folders (`hello-py`, `test-js`).
    pub fn suffix(self) -> &'static str {
        match self {
            Lang::Python => "py",
            Lang::Js => "js",
        }
    }
}

/// The venv holding componentize-py.
pub fn componentize_py() -> PathBuf {
    repo_root().join("target/tools/py/bin/componentize-py")
}

/// Installs the tools once; `Err` says why they are missing.
pub fn tools() -> Result<(), String> {
    static TOOLS: OnceLock<Result<(), String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let output = Command::new(repo_root().join("scripts/plugin-tools.sh"))
                .output()
                .map_err(|e| format!("could not run scripts/plugin-tools.sh: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "scripts/plugin-tools.sh failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        })
        .clone()
}

/// Whether the tools are there; if not, says so and (outside CI) the caller
/// skips. Under `CI=true` a missing tool panics.
pub fn tools_or_skip(test: &str) -> bool {
    match tools() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: the plugin tools must install under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// Builds `plugins/NAME` (e.g. `hello-py`) once per process, into
/// `target/plugins/LANG/NAME.wasm`, and returns its path; a build newer than
/// the plugin's sources and its SDK (left by an earlier test binary) is
/// used as it is. Panics with the tool's output when the build fails.
pub fn build(lang: Lang, name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let root = repo_root();
    let source = root.join("plugins").join(name);
    let lang_dir = match lang {
        Lang::Python => "python",
        Lang::Js => "js",
    };
    let out = root
        .join("target/plugins")
        .join(lang_dir)
        .join(format!("{name}.wasm"));
    let sdk = root.join("sdk").join(lang_dir);
    let built_at = std::fs::metadata(&out)
        .ok()
        .filter(|m| m.len() > 0)
        .and_then(|m| m.modified().ok());
    if let Some(built_at) = built_at
        && newest(&source).max(newest(&sdk)) < Some(built_at)
    {
        built.insert(name.to_owned(), out.clone());
        return out;
    }
    let mut command = match lang {
        Lang::Python => {
            let mut c = Command::new(root.join("sdk/python/build-plugin.sh"));
            c.arg(&source)
                .arg(&out)
                .env("COMPONENTIZE_PY", componentize_py());
            c
        }
        Lang::Js => {
            // The entry is the one `.js` file in `src/` (sorted, should
            // there ever be more).
            let mut entries: Vec<PathBuf> = std::fs::read_dir(source.join("src"))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.retain(|p| p.extension().is_some_and(|x| x == "js"));
            entries.sort();
            let entry = entries
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no .js entry in {}/src", source.display()));
            let mut c = Command::new("node");
            c.arg(root.join("sdk/js/build-plugin.mjs"))
                .arg(entry)
                .arg(&out);
            c
        }
    };
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not build {name}: {e}"));
    assert!(
        output.status.success(),
        "building {name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert(name.to_owned(), out.clone());
    out
}

/// The newest modification time of the files below `dir` (tool and build
/// folders aside).
fn newest(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let skip = ["node_modules", "target", "__pycache__", ".venv"];
        let modified = if path.is_dir() {
            match path.file_name().and_then(|n| n.to_str()) {
                Some(n) if skip.contains(&n) => None,
                _ => self::newest(&path),
            }
        } else {
            entry.metadata().ok().and_then(|m| m.modified().ok())
        };
        newest = newest.max(modified);
    }
    newest
}
