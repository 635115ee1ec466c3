//! HTTPS end to end: `serve --tls-cert/--tls-key` with a certificate from a
//! test CA made here, the CLI trusting that CA with `--ca-cert`, refusing a
//! server it cannot verify, and the server taking a new certificate on SIGHUP.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use taskhost::api::auth::Scope;
use taskhost_tests::server::Server;
use taskhost_tests::taskhost_bin;

/// A certificate authority that exists only in this test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a certificate for localhost and 127.0.0.1, and its key, to `dir`.
    fn issue(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).expect("write CA certificate");
        path.to_owned()
    }
}

/// `taskhost serve` with this certificate and key.
fn https_server(cert: &Path, key: &Path) -> Server {
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    Server::start_with(None, &["--tls-cert", cert, "--tls-key", key], None)
}

/// `taskhost plugin list` against `server`, trusting `ca` if given.
fn list_plugins(server: &Server, ca: Option<&Path>) -> Output {
    let token = server.token("acme", &[Scope::PluginsRead]);
    let mut cmd = Command::new(taskhost_bin());
    cmd.args([
        "plugin",
        "list",
        "--json",
        "--server",
        &server.url,
        "--token",
        &token,
    ])
    .env_remove("TASKHOST_CA_CERT");
    if let Some(ca) = ca {
        cmd.arg("--ca-cert").arg(ca);
    }
    cmd.output().expect("run taskhost")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_cli_speaks_https_to_serve_and_refuses_a_server_it_cannot_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("taskhost test CA");
    let ca_pem = ca.write(&dir.path().join("ca.pem"));
    let (cert, key) = ca.issue(dir.path());
    let server = https_server(&cert, &key);
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let trusted = list_plugins(&server, Some(&ca_pem));
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let listed: serde_json::Value = serde_json::from_slice(&trusted.stdout).expect("JSON");
    assert!(listed["items"].is_array() || listed.is_array(), "{listed}");

    // Without the CA, the system roots do not vouch for the server.
    let refused = list_plugins(&server, None);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("certificate could not be verified") && message.contains("--ca-cert"),
        "{message}"
    );

    // Plain HTTP to the HTTPS port gets nowhere, and the server lives on.
    let plain = server.url.replacen("https://", "http://", 1);
    let token = server.token("acme", &[Scope::PluginsRead]);
    let output = Command::new(taskhost_bin())
        .args(["plugin", "list", "--server", &plain, "--token", &token])
        .output()
        .expect("run taskhost");
    assert!(!output.status.success());
    let again = list_plugins(&server, Some(&ca_pem));
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn serve_takes_a_new_certificate_on_sighup_and_keeps_the_old_one_if_the_new_is_broken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = TestCa::new("old CA");
    let old_pem = old_ca.write(&dir.path().join("old-ca.pem"));
    let (cert, key) = old_ca.issue(dir.path());
    let server = https_server(&cert, &key);
    let first = list_plugins(&server, Some(&old_pem));
    assert!(first.status.success(), "{}", stderr(&first));

    // Renewal: a certificate from another CA in the same files, then SIGHUP.
    let new_ca = TestCa::new("new CA");
    let new_pem = new_ca.write(&dir.path().join("new-ca.pem"));
    new_ca.issue(dir.path());
    hangup(&server);
    wait_until(|| list_plugins(&server, Some(&new_pem)).status.success());
    assert!(!list_plugins(&server, Some(&old_pem)).status.success());

    // A broken certificate file on SIGHUP: the server keeps the last good one.
    std::fs::write(&cert, "not a certificate").expect("break the certificate");
    hangup(&server);
    wait_until(|| server.logs().contains("TLS reload failed"));
    let still = list_plugins(&server, Some(&new_pem));
    assert!(still.status.success(), "{}", stderr(&still));
}

fn hangup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

/// Polls `ready` (a signal is handled asynchronously) for up to 10 s.
fn wait_until(mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not ready after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_tls_settings_are_refused_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = |args: &[&str]| {
        Command::new(taskhost_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env_remove("TASKHOST_TLS_CERT")
            .env_remove("TASKHOST_TLS_KEY")
            .output()
            .expect("run taskhost serve")
    };
    let alone = serve(&["--tls-cert", "cert.pem"]);
    assert!(!alone.status.success());
    assert!(
        stderr(&alone).contains("tls_cert and tls_key go together"),
        "{}",
        stderr(&alone)
    );

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8");
    let absent = serve(&["--tls-cert", missing, "--tls-key", missing]);
    assert!(!absent.status.success());
    assert!(
        stderr(&absent).contains("could not read"),
        "{}",
        stderr(&absent)
    );

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN NOTHING-----\n").expect("write");
    let junk = junk.to_str().expect("utf-8");
    let broken = serve(&["--tls-cert", junk, "--tls-key", junk]);
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("holds no certificate"),
        "{}",
        stderr(&broken)
    );
}

/// A plugin's outbound HTTPS verifies the server's certificate against the
/// system's roots: a server whose CA only this test knows is refused, and
/// the refusal is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_outbound_https_verifies_certificates() {
    use reqwest::Method;
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("taskhost test CA");
    let (cert, key) = ca.issue(dir.path());
    let target = https_server(&cert, &key);
    let port = target
        .url
        .rsplit(':')
        .next()
        .expect("port")
        .trim_end_matches('/');
    let config = "[network]\nopen_ranges = [\"127.0.0.0/8\"]\n";
    let s = Server::start_with(None, &[], Some(config));
    let token = s.admin("acme");
    let plugin = s.upload(&token, "test-http").await;
    let body = json!({
        "plugin_id": plugin["id"], "wait": "30s",
        "input": {"requests": [{"url": format!("https://127.0.0.1:{port}/healthz")}]},
        "network": {"allow": [format!("127.0.0.1:{port}")]},
    });
    let (code, e) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(code, reqwest::StatusCode::OK, "{e}");
    let error = e["outcome"]["output"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.is_empty(), "the request must fail: {e}");
    let record = &e["outcome"]["http"][0];
    let why = record["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(why.contains("certificate"), "{e}");
    assert!(record["status"].is_null(), "{e}");
}

/// Over TLS the console's session cookie is `Secure` and `__Host-` named;
/// over plain HTTP it is neither (a browser would drop a `Secure` cookie
/// from an `http://` origin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_over_tls() {
    taskhost_net::tls::install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("taskhost test CA");
    let (cert, key) = ca.issue(dir.path());
    let servers = [
        (https_server(&cert, &key), true),
        (Server::start(None), false),
    ];
    for (server, tls) in &servers {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let token = server.admin("acme");
        let response = client
            .post(format!("{}/login", server.url))
            .header("origin", server.url.trim_end_matches('/'))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_owned();
        let secure = cookie.starts_with("__Host-taskhost_session=") && cookie.contains("; Secure");
        assert_eq!(secure, *tls, "{cookie}");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Path=/"),
            "{cookie}"
        );
    }
}
