//! What keeps the console's pages to themselves: a content security policy
//! and `nosniff` on every response, templates that escape what they show,
//! and a sign-in form that refuses other sites and large bodies.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, ORIGIN, X_CONTENT_TYPE_OPTIONS};
use taskhost_tests::server::Server;

/// A sign-in form's body.
fn form(token: &str) -> String {
    let encoded: String = token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    format!("token={encoded}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_api_carry_the_policy_headers() {
    let s = Server::start(None);
    for path in ["/login", "/healthz", "/v1/plugins"] {
        let response = client().get(s.at(path)).send().await.expect("get");
        let headers = response.headers();
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY], "default-src 'self'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_other_origins_and_large_bodies() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let own = s.at("").trim_end_matches('/').to_owned();
    let ours = client()
        .post(s.at("/login"))
        .header(ORIGIN, &own)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&token))
        .send()
        .await
        .expect("login");
    assert_eq!(ours.status(), StatusCode::SEE_OTHER);
    let theirs = client()
        .post(s.at("/login"))
        .header(ORIGIN, "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&token))
        .send()
        .await
        .expect("login");
    assert_eq!(theirs.status(), StatusCode::FORBIDDEN);
    assert!(theirs.headers().get("set-cookie").is_none());
    let huge = "x".repeat(64 << 10);
    let large = client()
        .post(s.at("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&huge))
        .send()
        .await
        .expect("login");
    assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_shown_escaped() {
    let s = Server::start(None);
    let response = client()
        .post(s.at("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("<script>alert(1)</script>"))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = response.text().await.expect("page");
    assert!(!page.contains("<script>alert"), "{page}");
}

/// A sign-in whose body never comes is cut after the login timeout (5 s),
/// not the API's request timeout (60 s): the caller is not known yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sign_in_is_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start(None);
    let host = s.url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 64];
    // Generous against a loaded machine; the point is well under 60 s.
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("answered before the API's request timeout")
        .expect("read");
    let status = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "not before the timeout"
    );
}
