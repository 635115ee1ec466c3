//! The real `taskhost serve`, on a free port, for black-box API tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use taskhost::api::auth::{Scope, mint_hs256};

/// The HS256 secret test servers are started with.
pub const SECRET: &str = "test-secret-for-black-box-tests";

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `taskhost serve` on the embedded store, or on `store` if given.
    pub fn start(store: Option<&str>) -> Server {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut cmd = Command::new(crate::taskhost_bin());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            SECRET,
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("TASKHOST_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(store) = store {
            cmd.args(["--store", store]);
        }
        let mut child = cmd.spawn().expect("start taskhost serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Server {
            child,
            url,
            client,
            _dir: dir,
        }
    }

    /// A token for `tenant` with `scopes`, valid for an hour.
    pub fn token(&self, tenant: &str, scopes: &[Scope]) -> String {
        mint_hs256(
            SECRET.as_bytes(),
            "tester",
            tenant,
            scopes,
            Duration::from_secs(3600),
            chrono::Utc::now(),
        )
        .expect("mint")
    }

    /// A token for `tenant` with every scope.
    pub fn admin(&self, tenant: &str) -> String {
        self.token(tenant, &[Scope::Admin])
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
