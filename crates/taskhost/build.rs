//! Records the git commit the binary is built from, for `taskhost --version`
//! ("unknown" outside a git checkout).

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TASKHOST_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (where there is a checkout).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for path in ["HEAD", "index"] {
            let path = std::path::Path::new(&dir).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
