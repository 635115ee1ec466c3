//! `taskhost new NAME --lang rust|python|js`: a ready-to-build plugin project.
//!
//! Everything a project needs is embedded in the binary (the templates below,
//! and for Python and JavaScript the WIT contract and the SDK module), so the
//! project builds anywhere, outside this repository. A Rust project depends on
//! the `taskhost-sdk` crate by path (the checkout this binary was built from,
//! or `--sdk`), or by git URL.

mod files;

use anyhow::{Context as _, bail};
use files::{File, project_files};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

/// What the new project's task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Template {
    /// A greeting that counts its runs in kv.
    Hello,
    /// A durable workflow: two steps with a durable sleep between them.
    Workflow,
}

/// Start a plugin project: a manifest, a task (hello world, or a durable
/// workflow), a README with the build and run commands, and a .gitignore.
///
/// Example: taskhost new greeter --lang python --template workflow
#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`, starting with a
    /// letter. It names the folder too, unless --dir says otherwise.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// What the task does.
    #[arg(long, value_enum, default_value_t = Template::Hello)]
    template: Template,
    /// Where to make the project (default: ./NAME). Must not exist, or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust only: the taskhost SDK to depend on, as a path to the `sdk` folder
    /// of a taskhost checkout or a git URL (default: the checkout this binary
    /// was built from).
    #[arg(long)]
    sdk: Option<String>,
}

pub(crate) fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    check_empty(&dir)?;
    let sdk = match args.lang {
        Lang::Rust => sdk_dependency(args.sdk.as_deref())?,
        _ if args.sdk.is_some() => bail!("--sdk is for Rust projects only"),
        _ => String::new(),
    };
    let project = project_files(args.lang, args.template, &args.name, &sdk);
    write_all(&dir, &project.files)?;
    println!("Made {} (a {} plugin).\n", dir.display(), project.language);
    println!("Build it and run it once:\n");
    println!("    cd {}", shell_word(&dir.display().to_string()));
    for line in &project.commands {
        println!("    {line}");
    }
    println!(
        "\nThen upload it: taskhost plugin upload {}",
        project.artifact
    );
    Ok(ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_well || !rest_ok || name.len() > 64 || name.ends_with('-') {
        bail!(
            "`{name}` is not a plugin name: use lowercase letters, digits and `-` \
             (at most 64), starting with a letter, e.g. `nightly-report`"
        );
    }
    Ok(())
}

fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; pick another name or --dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot use {}", dir.display())),
    }
}

/// The `taskhost-sdk = ...` line of a Rust project's manifest.
fn sdk_dependency(sdk: Option<&str>) -> anyhow::Result<String> {
    let is_url = |s: &str| {
        ["https://", "http://", "ssh://", "file://"]
            .iter()
            .any(|p| s.starts_with(p))
    };
    if let Some(scp) = sdk.filter(|s| s.starts_with("git@")) {
        // Cargo takes URLs only, not scp-like `git@host:path`.
        bail!(
            "--sdk {scp}: cargo needs a URL; write it as ssh://{}",
            scp.replacen(':', "/", 1)
        );
    }
    if let Some(url) = sdk.filter(|s| is_url(s)) {
        return Ok(format!("taskhost-sdk = {{ git = {} }}", toml_string(url)));
    }
    let (path, given) = match sdk {
        Some(path) => (PathBuf::from(path), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"),
            false,
        ),
    };
    let manifest = path.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&manifest)
        .is_ok_and(|text| text.contains("name = \"taskhost-sdk\""));
    if !is_sdk {
        let what = if given {
            format!(
                "{} is not the taskhost SDK (no {} naming taskhost-sdk)",
                path.display(),
                manifest.display()
            )
        } else {
            format!(
                "the taskhost SDK is not where this binary was built ({})",
                path.display()
            )
        };
        bail!("{what}; pass --sdk PATH (a taskhost checkout's `sdk` folder) or --sdk GIT-URL");
    }
    let path = path
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(format!(
        "taskhost-sdk = {{ path = {} }}",
        toml_string(&path.display().to_string())
    ))
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `s`, quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn write_all(dir: &Path, files: &[File]) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if file.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["demo", "nightly-report", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "1demo", "de mo", "demo-", "../x", "a_b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_word("demo"), "demo");
        assert_eq!(shell_word("my dir/it's"), r"'my dir/it'\''s'");
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }

    #[test]
    fn the_sdk_this_binary_was_built_beside_is_found() {
        let line = sdk_dependency(None).expect("the checkout's sdk");
        assert!(line.starts_with("taskhost-sdk = { path = \""), "{line}");
        assert!(sdk_dependency(Some("/nonexistent")).is_err());
        assert_eq!(
            sdk_dependency(Some("https://example.com/taskhost.git")).unwrap(),
            r#"taskhost-sdk = { git = "https://example.com/taskhost.git" }"#
        );
    }
}
