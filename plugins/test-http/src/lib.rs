//! Test plugin: makes each request its input lists, in order, and reports
//! what came of each (status and body size, or the error text), so tests can
//! check what the host allowed, refused and recorded.
//!
//! Input: `{"requests": [{"url": "...", "method": "POST", "body": "...",
//! "redirects": 5}]}`. Output: `[{"status": 200, "bytes": 12, "body": "..."}
//! | {"error": "..."}]` (`body` up to 256 bytes).

use serde::Deserialize;
use serde_json::{Value, json};
use taskhost_sdk::{Context, Result, export_task, http};

#[derive(Deserialize)]
struct Input {
    requests: Vec<Req>,
}

#[derive(Deserialize)]
struct Req {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    body: String,
    #[serde(default = "five")]
    redirects: u8,
}

fn get() -> String {
    "GET".into()
}

fn five() -> u8 {
    5
}

fn requests(_ctx: &Context, input: Input) -> Result<Vec<Value>> {
    Ok(input
        .requests
        .into_iter()
        .map(|r| {
            let request = http::Request::new(&r.method, &r.url)
                .body(r.body.into_bytes())
                .max_redirects(r.redirects);
            match request.send() {
                Ok(response) => {
                    let text = response.text();
                    let cut = text.floor_char_boundary(256);
                    json!({"status": response.status, "bytes": response.body.len(), "body": &text[..cut]})
                }
                Err(e) => json!({"error": e.to_string()}),
            }
        })
        .collect())
}

export_task!(requests);
