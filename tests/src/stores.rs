//! Stores for tests: a fresh SQLite file, or a fresh database on the MongoDB
//! server named by `TASKHOST_TEST_MONGODB_URI`.
//!
//! Without that variable the MongoDB leg is skipped with a notice — except
//! under `CI=true`, where `.ci/run` provides the server and a skip is a failure.

use chrono::{TimeZone, Utc};
use std::sync::Arc;
use taskhost_model::clock::ManualClock;
use taskhost_store::Store;

/// The environment variable naming the test MongoDB server.
pub const MONGODB_URI_VAR: &str = "TASKHOST_TEST_MONGODB_URI";

/// A store under test, its clock, and how to open it again.
pub struct Harness {
    pub store: Store,
    pub clock: ManualClock,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// A store on a new SQLite file in a temporary folder.
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", dir.path().join("taskhost.db").display());
        Harness::open(url, Some(dir)).await
    }

    /// A store on a new database of the test MongoDB server, or `None` (with
    /// a notice) when there is none outside CI.
    pub async fn mongodb() -> Option<Harness> {
        let url = mongodb_url(&format!("taskhost_test_{}", uuid_like()))?;
        Some(Harness::open(url, None).await)
    }

    async fn open(url: String, dir: Option<tempfile::TempDir>) -> Harness {
        let clock = ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
                .single()
                .expect("valid time"),
        );
        let store = Store::open(&url, Arc::new(clock.clone()))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        Harness {
            store,
            clock,
            url,
            _dir: dir,
        }
    }

    /// Drops the store and opens it again at the same place.
    pub async fn reopen(&mut self) {
        let fresh = Store::open(&self.url, Arc::new(self.clock.clone()))
            .await
            .expect("reopen");
        self.store = fresh;
    }
}

/// The test MongoDB URL with `database` in its path, if a server is configured.
pub fn mongodb_url(database: &str) -> Option<String> {
    let Ok(base) = std::env::var(MONGODB_URI_VAR) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{MONGODB_URI_VAR} is not set under CI=true: the MongoDB leg must run in CI (see .ci/run)"
            );
        }
        eprintln!(
            "notice: {MONGODB_URI_VAR} is not set; skipping the MongoDB leg (scripts/mongo-test-server.sh starts one)"
        );
        return None;
    };
    // mongodb://host:port/[db][?options] → put our database name in the path.
    let (head, query) = base
        .split_once('?')
        .map_or((base.as_str(), None), |(h, q)| (h, Some(q)));
    let rest = head.strip_prefix("mongodb://").expect("a mongodb:// URL");
    let hosts = rest.split('/').next().unwrap_or(rest);
    Some(match query {
        Some(q) => format!("mongodb://{hosts}/{database}?{q}"),
        None => format!("mongodb://{hosts}/{database}"),
    })
}

/// A unique-enough suffix for database names.
fn uuid_like() -> String {
    taskhost_model::new_id().replace('-', "")
}

impl Harness {
    /// Takes the store back to before executions had a `waiting_event`
    /// (the event a suspended workflow waits for, found by the tenant's
    /// events), as a node of an earlier release left it: on SQLite the
    /// column, its index and its migration undone; on MongoDB the field
    /// removed from every execution. Reopen the store to upgrade it.
    pub async fn rewind_waiting_event(&self) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let c = rusqlite::Connection::open(path).expect("open the SQLite file");
            let version: i64 = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("version");
            c.execute_batch(
                "DROP INDEX executions_waiting; ALTER TABLE executions DROP COLUMN waiting_event;",
            )
            .expect("undo the migration");
            c.pragma_update(None, "user_version", version - 1)
                .expect("version");
            return;
        }
        let client = mongodb::Client::with_uri_str(&self.url)
            .await
            .expect("connect");
        let db = client.default_database().expect("a database in the URL");
        db.collection::<mongodb::bson::Document>("executions")
            .update_many(
                mongodb::bson::doc! {},
                mongodb::bson::doc! { "$unset": { "waiting_event": "" } },
            )
            .await
            .expect("update");
    }

    /// Overwrites one stored execution's document with text no reader can
    /// parse, through the backend's own client: a poison record.
    pub async fn corrupt_execution(&self, id: &str) {
        const POISON: &str = "{\"not json";
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let c = rusqlite::Connection::open(path).expect("open the SQLite file");
            let n = c
                .execute("UPDATE executions SET doc = ?1 WHERE id = ?2", [POISON, id])
                .expect("update");
            assert_eq!(n, 1, "one row corrupted");
            return;
        }
        let client = mongodb::Client::with_uri_str(&self.url)
            .await
            .expect("connect");
        let db = client.default_database().expect("a database in the URL");
        let done = db
            .collection::<mongodb::bson::Document>("executions")
            .update_one(
                mongodb::bson::doc! { "_id": id },
                mongodb::bson::doc! { "$set": { "doc": POISON } },
            )
            .await
            .expect("update");
        assert_eq!(done.modified_count, 1, "one document corrupted");
    }
}
