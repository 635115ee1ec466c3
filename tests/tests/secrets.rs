//! The server's secrets on disk and in flags: the development secret is
//! private (file 0600, folder 0700), a readable-by-others or unreadable one
//! is refused rather than used or replaced, and short secrets are refused.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use taskhost_tests::taskhost_bin;

fn serve(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(taskhost_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("TASKHOST_JWT_SECRET")
        .env_remove("TASKHOST_STORE");
    cmd
}

fn refused(output: &Output, words: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains(words), "{stderr}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_development_secret_is_private_and_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = serve(&data, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening"), "{line}");
    let secret = data.join("dev-secret");
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&data), 0o700);

    // Readable by others: refused, saying how to fix it.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = serve(&data, &[]).output().expect("serve");
    refused(&output, "chmod 600");

    // Unreadable: an error, not a new secret.
    std::fs::remove_file(&secret).expect("remove");
    std::fs::create_dir(&secret).expect("a folder in its place");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let output = serve(&data, &[]).output().expect("serve");
    refused(&output, "could not read");
    assert!(secret.is_dir(), "not replaced");
}

#[test]
fn short_secrets_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = serve(dir.path(), &["--jwt-secret", "only-sixteen-byt"])
        .output()
        .expect("serve");
    refused(&output, "at least 32");
    let output = serve(dir.path(), &[])
        .env("TASKHOST_JWT_SECRET", "short")
        .output()
        .expect("serve");
    refused(&output, "at least 32");
}
