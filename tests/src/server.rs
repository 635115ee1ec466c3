//! The real `taskhost serve`, on a free port, for black-box API tests.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use taskhost::api::auth::{Scope, mint_hs256};

/// The HS256 secret test servers are started with.
pub const SECRET: &str = "test-secret-for-black-box-tests-0123";

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    /// The store URL it was started with (`None`: the embedded store in
    /// its data folder).
    pub store: Option<String>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `taskhost serve` on the embedded store, or on `store` if given.
    pub fn start(store: Option<&str>) -> Server {
        Server::start_with(store, &[], None)
    }

    /// Like [`Server::start`], with more `serve` flags and a config file
    /// (TOML text, written to the server's data folder).
    pub fn start_with(store: Option<&str>, args: &[&str], config: Option<&str>) -> Server {
        Server::start_with_env(store, args, config, &[])
    }

    /// Like [`Server::start_with`], with environment variables set.
    pub fn start_with_env(
        store: Option<&str>,
        args: &[&str],
        config: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = tempfile::tempdir().expect("temporary folder");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
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
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log);
        if let Some(store) = store {
            cmd.args(["--store", store]);
        }
        cmd.args(args);
        if let Some(config) = config {
            let path = dir.path().join("taskhost.toml");
            std::fs::write(&path, config).expect("write the config file");
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd.spawn().expect("start taskhost serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        taskhost::tls::install_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Server {
            child,
            url,
            store: store.map(str::to_owned),
            client,
            _dir: dir,
        }
    }

    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.at("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The server's data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The server process's id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// Sends a request with an optional token and JSON body; returns the
    /// status and the body (as JSON, or as a JSON string if it is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.at(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Uploads a built plugin as `name` 1.0.0 and returns its record.
    pub async fn upload(&self, token: &str, name: &str) -> Value {
        let url = self.at(&format!("/v1/plugins?name={name}&version=1.0.0"));
        let response = self
            .client
            .post(url)
            .bearer_auth(token)
            .body(crate::plugin(name))
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::CREATED, "upload {name}");
        response.json().await.expect("json")
    }

    /// The server's resident memory now and at its peak, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// What the server wrote to stderr (its logs) so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap_or_default()
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
