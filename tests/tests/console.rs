//! The web console in a real headless browser (Debian's chromium and
//! chromium-driver, over WebDriver) against a real `taskhost serve`: sign in,
//! upload (and a refused upload's reason), a cron schedule with its preview
//! across a DST change, trigger and watch the run succeed without reloading,
//! logs, cancel a long run, pause; another tenant sees none of it, and a
//! read-only token can change nothing. Screenshots go to
//! `target/console-screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use taskhost::api::auth::Scope;
use taskhost_tests::procs::free_port;
use taskhost_tests::server::Server;
use taskhost_tests::{plugin_path, repo_root};

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver, or says why not: under `CI=true` its absence fails
/// the test (CI installs it), elsewhere the test is skipped with a notice.
fn driver() -> Option<Driver> {
    let port = free_port();
    let spawned = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "chromedriver is missing under CI=true ({e}); .ci/run installs chromium-driver"
            );
            eprintln!(
                "notice: chromedriver not found ({e}); skipping the console's browser test (apt-get install chromium chromium-driver)"
            );
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,1000"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

fn shots() -> PathBuf {
    let dir = repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Waits until `check` holds on the page's text (the page is not reloaded).
async fn until_text(c: &Client, what: &str, mut check: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The page may be between two loads, or its <main> being swapped.
        let text = match c.find(Locator::Css("main")).await {
            Ok(main) => main.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if check(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sign_in(c: &Client, s: &Server, token: &str) {
    c.goto(&s.at("/")).await.expect("open");
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/login", "signed out: the sign-in page");
    c.find(Locator::Css("#token"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type");
    c.find(Locator::Css("form[action='/login'] button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("sign in");
    until_text(c, "the overview", |t| t.contains("Overview")).await;
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("form[action='/logout'] button"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.current_url().await.expect("url").path() != "/login" {
        assert!(Instant::now() < deadline, "not signed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn upload(c: &Client, name: &str, file: &std::path::Path) {
    let form = c.find(Locator::Css("#upload")).await.expect("upload form");
    let field = form
        .find(Locator::Css("input[name=name]"))
        .await
        .expect("name");
    field.clear().await.expect("clear");
    field.send_keys(name).await.expect("name");
    form.find(Locator::Css("input[type=file]"))
        .await
        .expect("file")
        .send_keys(file.to_str().expect("utf-8"))
        .await
        .expect("choose file");
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(driver) = driver() else { return };
    let s = Server::start(None);
    let admin = s.admin("acme");
    let c = browser(&driver).await;

    // Sign in; the overview.
    sign_in(&c, &s, &admin).await;

    // Upload hello and test-sleep; a refused upload says why.
    c.goto(&s.at("/plugins")).await.expect("plugins");
    upload(&c, "hello", &plugin_path("hello")).await;
    until_text(&c, "hello listed", |t| t.contains("hello")).await;
    upload(&c, "sleep", &plugin_path("test-sleep")).await;
    until_text(&c, "sleep listed", |t| t.contains("sleep")).await;
    let junk = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(junk.path(), b"this is not a component").expect("write");
    upload(&c, "junk", junk.path()).await;
    let refused = c
        .wait()
        .for_element(Locator::Css("#upload-error:not([hidden])"))
        .await
        .expect("the refusal")
        .text()
        .await
        .expect("text");
    assert!(refused.contains("not a WebAssembly binary"), "{refused}");

    let (_, list) = s.call(Method::GET, "/v1/plugins", Some(&admin), None).await;
    let id_of = |name: &str| {
        list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|p| p["name"] == name))
            .and_then(|p| p["id"].as_str())
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .to_owned()
    };
    let (hello, sleep) = (id_of("hello"), id_of("sleep"));

    // A cron schedule in Europe/London: the preview crosses the change to
    // summer time (the 29th of each month at 01:30; March 2027 is BST).
    c.goto(&s.at("/schedules/new")).await.expect("form");
    let form = c.find(Locator::Css("#schedule")).await.expect("form");
    form.find(Locator::Css("input[name=name]"))
        .await
        .expect("name")
        .send_keys("greet")
        .await
        .expect("type");
    form.find(Locator::Css("select[name=plugin_id]"))
        .await
        .expect("plugin")
        .select_by_value(&hello)
        .await
        .expect("select");
    for (field, value) in [("expr", "30 1 29 * *"), ("timezone", "Europe/London")] {
        let f = form
            .find(Locator::Css(&format!("input[name={field}]")))
            .await
            .expect(field);
        f.clear().await.expect("clear");
        f.send_keys(value).await.expect("type");
    }
    let input = form
        .find(Locator::Css("textarea[name=input]"))
        .await
        .expect("input");
    input.clear().await.expect("clear");
    input.send_keys(r#"{"name": "Ada"}"#).await.expect("type");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = c
            .find_all(Locator::Css("#preview tbody tr"))
            .await
            .expect("rows");
        let dst = c
            .find_all(Locator::Css("#preview tbody tr.dst"))
            .await
            .expect("dst");
        let text = c
            .find(Locator::Css("#preview"))
            .await
            .expect("preview")
            .text()
            .await
            .unwrap_or_default();
        if rows.len() == 10 && !dst.is_empty() && text.contains("+01:00") {
            assert!(text.contains("clock change"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no preview with a DST change: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shot(&c, "schedule-form-with-preview").await;
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("create")
        .click()
        .await
        .expect("click");
    until_text(&c, "the schedule listed", |t| t.contains("greet")).await;

    // Trigger it; the run appears and succeeds on the live list.
    let (_, schedules) = s
        .call(Method::GET, "/v1/schedules", Some(&admin), None)
        .await;
    let schedule = schedules["items"][0]["id"]
        .as_str()
        .expect("schedule id")
        .to_owned();
    click(
        &c,
        &format!("button[data-action='/v1/schedules/{schedule}/trigger']"),
    )
    .await;
    c.goto(&s.at(&format!("/executions?schedule_id={schedule}")))
        .await
        .expect("executions");
    until_text(&c, "the triggered run to succeed", |t| {
        t.contains("succeeded")
    })
    .await;
    click(&c, "main table tbody tr a").await;
    let detail = until_text(&c, "the logs", |t| t.contains("Logs")).await;
    assert!(
        detail.contains("greeting Ada") && detail.contains("Hello, Ada!"),
        "{detail}"
    );
    shot(&c, "execution-detail").await;

    // Cancel a long run from its page.
    let body = json!({"plugin_id": sleep, "input": {"ms": 20000}, "limits": {"timeout": "60s"}});
    let (code, long) = s
        .call(Method::POST, "/v1/executions", Some(&admin), Some(body))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{long}");
    let long = long["id"].as_str().expect("id").to_owned();
    c.goto(&s.at(&format!("/executions/{long}")))
        .await
        .expect("detail");
    until_text(&c, "the long run to start", |t| t.contains("running")).await;
    click(&c, "button[data-action$='/cancel']").await;
    c.accept_alert().await.expect("confirm");
    until_text(&c, "the cancel", |t| t.contains("cancelled")).await;

    // Edit it: a new expression, saved with PATCH.
    c.goto(&s.at(&format!("/schedules/{schedule}/edit")))
        .await
        .expect("edit");
    let expr = c
        .find(Locator::Css("#schedule input[name=expr]"))
        .await
        .expect("expr");
    expr.clear().await.expect("clear");
    expr.send_keys("0 7 * * *").await.expect("type");
    click(&c, "#schedule button[type=submit]").await;
    until_text(&c, "the edited schedule", |t| t.contains("0 7 * * *")).await;

    // Pause the schedule.
    c.goto(&s.at("/schedules")).await.expect("schedules");
    click(
        &c,
        &format!("button[data-action='/v1/schedules/{schedule}/pause']"),
    )
    .await;
    until_text(&c, "paused", |t| t.contains("paused")).await;
    c.goto(&s.at("/")).await.expect("overview");
    until_text(&c, "the overview's chart", |t| t.contains("succeeded: ")).await;
    shot(&c, "overview").await;

    // Another tenant sees none of it.
    sign_out(&c).await;
    sign_in(&c, &s, &s.admin("globex")).await;
    for page in ["/plugins", "/schedules", "/executions"] {
        c.goto(&s.at(page)).await.expect(page);
        let text = until_text(&c, page, |_| true).await;
        let rows = c
            .find_all(Locator::Css("main table tbody tr"))
            .await
            .expect("rows");
        assert!(
            rows.is_empty(),
            "{page} shows another tenant's records: {text}"
        );
    }
    c.goto(&s.at(&format!("/executions/{long}")))
        .await
        .expect("other's run");
    until_text(&c, "not found", |t| t.contains("Not found")).await;

    // A read-only token sees no write buttons, and the API refuses anyway.
    sign_out(&c).await;
    let reader = s.token(
        "acme",
        &[
            Scope::PluginsRead,
            Scope::SchedulesRead,
            Scope::ExecutionsRead,
        ],
    );
    sign_in(&c, &s, &reader).await;
    c.goto(&s.at("/schedules")).await.expect("schedules");
    until_text(&c, "the schedule", |t| t.contains("greet")).await;
    assert!(
        c.find_all(Locator::Css("button[data-action]"))
            .await
            .expect("buttons")
            .is_empty()
    );
    c.goto(&s.at("/plugins")).await.expect("plugins");
    assert!(
        c.find_all(Locator::Css("#upload"))
            .await
            .expect("forms")
            .is_empty()
    );
    let script = "return fetch(arguments[0], {method: 'POST', headers: {'x-taskhost-console': '1'}}).then(r => r.status)";
    let status: Value = c
        .execute(
            script,
            vec![json!(format!("/v1/schedules/{schedule}/resume"))],
        )
        .await
        .expect("fetch");
    assert_eq!(status, json!(403), "the API refuses a read-only token");
    // Without the console's header the cookie is no credential at all.
    let script = "return fetch(arguments[0]).then(r => r.status)";
    let status: Value = c
        .execute(script, vec![json!("/v1/schedules")])
        .await
        .expect("fetch");
    assert_eq!(status, json!(401));
    c.close().await.expect("close");
}
