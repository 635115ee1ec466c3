//! Helpers shared by the black-box tests: where the built plugins are, and the
//! real `taskhost` binary, and stores to test against.

pub mod cluster;
pub mod collector;
pub mod langs;
pub mod procs;
pub mod receiver;
pub mod server;
pub mod stores;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Folder with the plugins built by `build.rs`.
pub fn plugin_dir() -> &'static Path {
    Path::new(env!("TASKHOST_PLUGIN_DIR"))
}

/// Path of a built plugin by crate name (`hello`, `test-spin`, …).
pub fn plugin_path(name: &str) -> PathBuf {
    let exact = plugin_dir().join(format!("{name}.wasm"));
    if exact.exists() {
        return exact;
    }
    // Library crates' artifacts use underscores.
    plugin_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The bytes of a built plugin.
pub fn plugin(name: &str) -> Vec<u8> {
    let path = plugin_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("plugin {name} at {}: {e}", path.display()))
}

/// A component that imports one empty instance named `name` and does
/// nothing else: enough to see what validation says of that import.
pub fn component_importing(name: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    let mut imports = ComponentImportSection::new();
    imports.import(name, ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types).section(&imports);
    component.finish()
}

/// The value of `series` — a metric's name with its labels, e.g.
/// `taskhost_runs_total{status="succeeded"}` — in Prometheus text. Panics,
/// showing the text, when the series is absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository root")
}

/// The real `taskhost` binary: this package's `taskhost-node` target, which
/// is the `taskhost` command line itself (`taskhost::cli::main`). Cargo
/// builds a package's binaries before it runs the package's tests, benches
/// and helper binaries, and puts them beside those in the profile's folder,
/// so the binary is always as new as the tests, and no test builds anything.
/// `TASKHOST_BIN` names another binary instead (e.g. a copy a long chaos run
/// keeps using while the tree is rebuilt).
pub fn taskhost_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TASKHOST_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test>, or target/<profile>/<helper binary>
        let dir = exe.parent().expect("the executable's folder");
        let profile_dir = if dir.ends_with("deps") {
            dir.parent().expect("target/<profile>")
        } else {
            dir
        };
        let bin = profile_dir.join(format!("taskhost-node{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: run the tests through cargo (`cargo test --workspace`), \
             or set TASKHOST_BIN to a taskhost binary",
            bin.display()
        );
        bin
    })
}

/// `PATH` with a folder first that holds `taskhost` (a link to
/// [`taskhost_bin`]), for scripts that call it by name as the README does.
pub fn path_with_taskhost() -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("taskhost-on-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a folder for the taskhost link");
        let link = dir.join("taskhost");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(taskhost_bin(), &link).expect("link taskhost");
        dir
    });
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs each named `async fn case(server: Server)` of the calling test file
/// against a real server on the embedded store and, when configured, on
/// MongoDB (`mod sqlite` and `mod mongodb` of tests). `with(args, config)`
/// gives the servers more `serve` flags and a config file.
#[macro_export]
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        $crate::both_stores!(with(&[], None) $($case),*);
    };
    (with($args:expr, $config:expr) $($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = $crate::server::Server::start_with(None, $args, $config);
                    super::$case(server).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = format!("taskhost_api_{}", taskhost_model::new_id().replace('-', ""));
                    if let Some(url) = $crate::stores::mongodb_url(&db) {
                        let server = $crate::server::Server::start_with(Some(&url), $args, $config);
                        super::$case(server).await;
                    }
                }
            )*
        }
    };
}

/// Runs each named `async fn case(harness: stores::Harness)` of the calling
/// test file on a fresh SQLite store and, when configured, a fresh MongoDB
/// database (`mod sqlite` and `mod mongodb`): one suite for every store.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case($crate::stores::Harness::sqlite().await).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(harness) = $crate::stores::Harness::mongodb().await {
                        super::$case(harness).await;
                    }
                }
            )*
        }
    };
}

/// `bytes` (a plugin) with a custom section naming `n` appended: the same
/// plugin under another hash, so an upload of it compiles again.
pub fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = format!("variant-{n}");
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(section.len() as u8);
    out.extend(section);
    out
}

/// The runtime a benchmark runs on: two worker threads, as the machine's
/// two cores.
pub fn bench_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

/// The middle value of a benchmark's rounds (the upper middle of an even
/// count), which one disturbed round cannot move far.
pub fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}
