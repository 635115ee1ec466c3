//! A local HTTP server for tests of outbound HTTP and webhooks: the
//! "internet" a node may reach when the operator opens 127.0.0.0/8.
//!
//! Routes: `/ok` (200, `hello`), `/big` (100 KB), `/slow` (answers after
//! 15 s), `/echo` (the request body's length), `/redirect?to=URL` (302),
//! and `/hook` (records each request; answers 200).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request `/hook` received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A running receiver; stops on drop.
pub struct Receiver {
    pub port: u16,
    pub hooks: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `port` (0: any free port) on 127.0.0.1.
    pub async fn start(port: u16) -> Receiver {
        let hooks: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = Router::new()
            .route("/ok", get(|| async { "hello" }))
            .route("/big", get(|| async { vec![b'x'; 100_000] }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    "late"
                }),
            )
            .route(
                "/echo",
                any(|body: Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/redirect",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    let to = q.get("to").cloned().unwrap_or_default();
                    (StatusCode::FOUND, [("location", to)], "")
                }),
            )
            .route("/hook", any(hook))
            .with_state(hooks.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { port, hooks, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.hooks.lock().expect("hooks").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(
    State(hooks): State<Arc<Mutex<Vec<Received>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    hooks.lock().expect("hooks").push(Received {
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}
