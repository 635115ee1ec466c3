//! Builds the example and test plugins (`plugins/`) for `wasm32-wasip2`, so that
//! `cargo test` needs no manual step. The plugins form their own workspace and
//! build into `<target>/plugins`, apart from the host's build.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf();
    let plugins = root.join("plugins");
    watch(&root);

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    // These machines do not auto-install targets from rust-toolchain.toml;
    // `rustup target add` is a no-op once the target is there.
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .output();
    if added.is_ok_and(|out| !out.status.success()) {
        println!(
            "cargo:warning=`rustup target add {TARGET}` failed; the plugin build may fail too"
        );
    }

    let output = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .output()
        .unwrap_or_else(|e| panic!("could not run {cargo}: {e}"));
    if !output.status.success() {
        panic!(
            "building the plugins failed (is the target installed? `rustup target add {TARGET}`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let out = target_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=TASKHOST_PLUGIN_DIR={}", out.display());
}

/// Rebuild the plugins when the Rust plugins' sources, the Rust SDK or the
/// WIT change. Only those files are watched: cargo scans a watched folder
/// whole, and `sdk/js/node_modules` (thousands of files, rewritten by `npm
/// ci`) or the Python and JavaScript plugins' outputs must not trigger a
/// rebuild. A new plugin folder is picked up through `plugins/Cargo.toml`
/// (its `members`) or on the next change of any plugin.
fn watch(root: &Path) {
    let plugins = root.join("plugins");
    let mut paths = vec![
        plugins.join("Cargo.toml"),
        plugins.join("Cargo.lock"),
        root.join("sdk/Cargo.toml"),
        root.join("sdk/src"),
        root.join("sdk/wit"),
    ];
    if let Ok(entries) = std::fs::read_dir(&plugins) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("Cargo.toml").exists() {
                paths.push(dir.join("Cargo.toml"));
                paths.push(dir.join("src"));
            }
        }
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
