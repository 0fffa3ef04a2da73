//! The database's upkeep, on SQLite (PostgreSQL: `postgres`):
//! reopening applies no migration twice and keeps the data, and the audit
//! trail collapses repeats, is pruned by age, and keeps one row per ACME
//! event.

use crate::decisions::{event_kinds, store};
use doorman_core::AuditKind;
use doorman_store::Store;

/// Opens `url` twice: the second open applies no migration again and finds
/// what the first wrote.
pub(crate) async fn reopening_applies_no_migration_twice_and_keeps_data(url: &str) {
    let store = Store::open(url).await.unwrap();
    store.add_operator("alice", &[1; 32], 0).await.unwrap();
    drop(store);
    let store = Store::open(url).await.unwrap();
    assert_eq!(
        store
            .operator_by_token_hash(&[1; 32])
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
}

/// Refusals in one minute are one row with a count; a page view is kept
/// once per recipient and request; pruning deletes by age and says so; ACME
/// rows replace each other.
pub(crate) async fn the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace(store: Store) {
    use doorman_store::AuditEvent;
    use doorman_store::acme::StoredCertificate;
    let refused = |at| {
        AuditEvent::new(AuditKind::RefusedLimit, at)
            .actor("alice")
            .computer("pc")
            .address("192.0.2.1")
    };
    for at in [60_000, 60_001, 119_999] {
        store.record(&refused(at)).await.unwrap();
    }
    store.record(&refused(120_000)).await.unwrap();
    store.record(&refused(60_002).actor("bob")).await.unwrap();
    let viewed = AuditEvent::new(AuditKind::PageViewed, 1)
        .request("r1", "pc")
        .actor("it@example.com");
    for _ in 0..3 {
        store.record_once(&viewed).await.unwrap();
    }
    store
        .record_once(&viewed.clone().actor("boss@example.com"))
        .await
        .unwrap();
    let counts: Vec<(AuditKind, Option<String>, i64)> = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.actor, e.count))
        .collect();
    let alice = Some("alice".to_string());
    assert_eq!(
        counts,
        [
            (AuditKind::RefusedLimit, alice.clone(), 3),
            (AuditKind::RefusedLimit, alice, 1),
            (AuditKind::RefusedLimit, Some("bob".into()), 1),
            (AuditKind::PageViewed, Some("it@example.com".into()), 1),
            (AuditKind::PageViewed, Some("boss@example.com".into()), 1),
        ]
    );
    assert_eq!(
        store.prune_audit(100_000, "admin", 200_000).await.unwrap(),
        4
    );
    assert_eq!(
        event_kinds(&store).await,
        [AuditKind::RefusedLimit, AuditKind::AuditPruned]
    );

    assert_eq!(store.acme_certificate("a.example").await.unwrap(), None);
    let first = StoredCertificate {
        chain_pem: "one".into(),
        sealed_key: "k1".into(),
        not_after: 5,
    };
    store
        .save_acme_certificate("a.example", &first, 1)
        .await
        .unwrap();
    let second = StoredCertificate {
        chain_pem: "two".into(),
        ..first
    };
    store
        .save_acme_certificate("a.example", &second, 2)
        .await
        .unwrap();
    assert_eq!(
        store.acme_certificate("a.example").await.unwrap(),
        Some(second)
    );
    store
        .save_acme_account("https://ca/dir", "s1")
        .await
        .unwrap();
    store
        .save_acme_account("https://ca/dir", "s2")
        .await
        .unwrap();
    assert_eq!(
        store
            .acme_account("https://ca/dir")
            .await
            .unwrap()
            .as_deref(),
        Some("s2")
    );
}

#[tokio::test]
async fn on_sqlite_reopening_applies_no_migration_twice_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    reopening_applies_no_migration_twice_and_keeps_data(&crate::database_url(dir.path())).await;
}

#[tokio::test]
async fn on_sqlite_the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace() {
    let (_dir, store) = store().await;
    the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace(store).await;
}
