//! Checks an HTTP endpoint: GETs `url` and compares the answer with what is
//! expected. A mismatch fails the run (retryably: the endpoint may recover),
//! so a schedule's webhooks and retries do the alerting.
//!
//! Input: `{"url": "https://status.example.com/health", "expect_status": 200,
//! "contains": "ok", "token_secret": "STATUS_TOKEN"}` (all but `url` optional;
//! `token_secret` names a secret sent as a bearer token).
//! Output: `{"url", "status", "bytes", "ms"}`.

use serde::{Deserialize, Serialize};
use taskhost_sdk::{Context, Error, Result, export_task, http};

#[derive(Deserialize)]
struct Check {
    url: String,
    #[serde(default = "ok")]
    expect_status: u16,
    #[serde(default)]
    contains: Option<String>,
    #[serde(default)]
    token_secret: Option<String>,
}

fn ok() -> u16 {
    200
}

#[derive(Serialize)]
struct Report {
    url: String,
    status: u16,
    bytes: usize,
    ms: u128,
}

fn check(ctx: &Context, input: Check) -> Result<Report> {
    let started = std::time::Instant::now();
    let mut request = http::get(&input.url);
    if let Some(name) = &input.token_secret {
        request = request.header("authorization", &format!("Bearer {}", ctx.secret(name)?));
    }
    let response = request.send()?;
    let ms = started.elapsed().as_millis();
    ctx.info(&format!(
        "{} answered {} in {ms} ms",
        input.url, response.status
    ));
    if response.status != input.expect_status {
        return Err(Error::retryable(format!(
            "{} answered {}; expected {}",
            input.url, response.status, input.expect_status
        )));
    }
    if let Some(text) = &input.contains
        && !response.text().contains(text.as_str())
    {
        return Err(Error::retryable(format!(
            "{}'s answer does not contain {text:?}",
            input.url
        )));
    }
    Ok(Report {
        url: input.url,
        status: response.status,
        bytes: response.body.len(),
        ms,
    })
}

export_task!(check);
