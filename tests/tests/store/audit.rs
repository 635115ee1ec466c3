//! The audit log: this concern's part of the store conformance suite.

use super::*;
use taskhost_model::audit::AuditRecord;

taskhost_tests::conformance!(audit_records_are_listed_per_tenant_newest_first,);

fn record(tenant: &str, at: DateTime<Utc>, keep: chrono::Duration) -> AuditRecord {
    AuditRecord {
        id: new_id(),
        tenant: tenant.into(),
        subject: Some("alice".into()),
        token_id: None,
        operation: "POST /v1/schedules".into(),
        path: "/v1/schedules".into(),
        request_id: new_id(),
        client: Some("127.0.0.1".into()),
        status: 201,
        error: None,
        at,
        expires_at: at + keep,
    }
}

/// Records are listed newest first, of one tenant or of all, page by page;
/// expired ones go.
async fn audit_records_are_listed_per_tenant_newest_first(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let day = chrono::Duration::days(1);
    let old = record("acme", now, chrono::Duration::seconds(10));
    let (a, b) = (record("acme", now, day), record("globex", now, day));
    for r in [&old, &a, &b] {
        store.audit(r).await.expect("append");
    }
    let first = PageRequest {
        cursor: None,
        limit: Some(1),
    };
    let page = store
        .audit_records(Some("acme"), &first)
        .await
        .expect("list");
    assert_eq!(
        page.items,
        std::slice::from_ref(&a),
        "newest first, one a page"
    );
    let next = PageRequest {
        cursor: page.next.clone(),
        limit: Some(10),
    };
    let rest = store
        .audit_records(Some("acme"), &next)
        .await
        .expect("list");
    assert_eq!(rest.items, std::slice::from_ref(&old));
    let all = store
        .audit_records(None, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(all.items.len(), 3);
    // Past its time, a record is forgotten (SQLite sweeps at the next
    // append; MongoDB's TTL monitor collects it on its own schedule).
    h.clock.advance(Duration::from_secs(11));
    store
        .audit(&record("acme", store.now(), day))
        .await
        .expect("append");
    if h.url.starts_with("sqlite") {
        let acme = store
            .audit_records(Some("acme"), &PageRequest::default())
            .await
            .expect("list");
        assert!(!acme.items.contains(&old), "expired");
    }
}
