//! The database's own guarantees, on SQLite and on PostgreSQL: one winner
//! per request, no decision after expiry, named errors for duplicates, one
//! session per approval, and a revoked secret's requests cancelled with it.

use doorman_core::RequestState;
use doorman_server::store::{AuditEvent, NewRequest, Principal, Store, StoreError};
use doorman_test_support::postgres::Postgres;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = doorman_server::default_database_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    (dir, store)
}

async fn request(store: &Store, id: &str, created_at: i64, expires_at: i64) {
    store
        .create_request(&NewRequest {
            id: id.into(),
            computer: "pc".into(),
            operator: "alice".into(),
            operator_ip: "127.0.0.1".into(),
            reason: String::new(),
            service: "run `true`".into(),
            service_json: r#"{"kind":"command","argv":["true"]}"#.into(),
            created_at,
            expires_at,
            recipients: vec![
                ("a@example.com".into(), [id.as_bytes()[0]; 32]),
                (
                    "b@example.com".into(),
                    [id.as_bytes()[0].wrapping_add(100); 32],
                ),
            ],
        })
        .await
        .unwrap();
}

/// The kinds of the audit trail's events, oldest first.
async fn event_kinds(store: &Store) -> Vec<String> {
    let events = store.audit_events().await.unwrap();
    events.into_iter().map(|e| e.event).collect()
}

fn audit(event: &str) -> AuditEvent {
    AuditEvent {
        event: event.into(),
        ..AuditEvent::default()
    }
}

async fn a_click_at_or_after_expiry_never_wins(store: Store) {
    request(&store, "r1", 1_000, 2_000).await;
    let at_expiry = store
        .settle(
            "r1",
            RequestState::Allowed,
            Some("a@example.com"),
            2_000,
            &audit("allowed"),
        )
        .await
        .unwrap();
    assert!(!at_expiry);
    let early_expiry = store
        .settle("r1", RequestState::Expired, None, 1_999, &audit("expired"))
        .await
        .unwrap();
    assert!(!early_expiry, "expiry before its time is refused");
    assert!(
        store
            .settle("r1", RequestState::Expired, None, 2_000, &audit("expired"))
            .await
            .unwrap()
    );
    let row = store.request("r1").await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Expired);
    assert_eq!(row.decided_by, None);
    let kinds = event_kinds(&store).await;
    assert!(
        !kinds.contains(&"allowed".to_string()),
        "a losing settle records nothing"
    );
}

async fn many_simultaneous_decisions_have_exactly_one_winner(store: Store) {
    request(&store, "r2", 0, i64::MAX).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (state, event) = if i % 2 == 0 {
                (RequestState::Allowed, "allowed")
            } else {
                (RequestState::Denied, "denied")
            };
            let by = format!("r{i}@example.com");
            store
                .settle("r2", state, Some(&by), 10, &audit(event))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
    let decisions = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "allowed" || e.event == "denied")
        .count();
    assert_eq!(decisions, 1);
}

async fn a_settled_request_never_changes_again(store: Store) {
    request(&store, "r3", 0, 10_000).await;
    assert!(
        store
            .settle(
                "r3",
                RequestState::Denied,
                Some("a@example.com"),
                5,
                &audit("denied")
            )
            .await
            .unwrap()
    );
    for state in [
        RequestState::Allowed,
        RequestState::Cancelled,
        RequestState::Denied,
    ] {
        assert!(
            !store
                .settle("r3", state, Some("b@example.com"), 6, &audit("x"))
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .settle("r3", RequestState::Expired, None, 20_000, &audit("expired"))
            .await
            .unwrap()
    );
    let row = store.request("r3").await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.decided_by.as_deref()),
        (RequestState::Denied, Some("a@example.com"))
    );
}

async fn duplicate_names_and_second_sessions_are_named_errors(store: Store) {
    store.add_operator("alice", &[1; 32], 0).await.unwrap();
    let err = store.add_operator("alice", &[2; 32], 0).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                kind: "operator",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "operator \"alice\" already exists");
    store.add_agent("pc", &[3; 32], 0).await.unwrap();
    assert!(matches!(
        store.add_agent("pc", &[4; 32], 0).await,
        Err(StoreError::AlreadyExists { kind: "agent", .. })
    ));

    request(&store, "r4", 0, 10_000).await;
    store
        .start_session(Some("r4"), "pc", "alice", 1)
        .await
        .unwrap();
    assert!(matches!(
        store.start_session(Some("r4"), "pc", "alice", 2).await,
        Err(StoreError::SessionAlreadyStarted)
    ));
    // Sessions without a request (authorization off) are not limited.
    store.start_session(None, "pc", "alice", 3).await.unwrap();
    store.start_session(None, "pc", "alice", 4).await.unwrap();
}

async fn revoking_a_secret_cancels_what_is_pending_with_it(store: Store) {
    store.add_operator("alice", &[1; 32], 0).await.unwrap();
    store.add_agent("pc", &[2; 32], 0).await.unwrap();
    request(&store, "x5", 0, 10_000).await;
    request(&store, "y6", 0, 10_000).await;
    store
        .settle(
            "y6",
            RequestState::Allowed,
            Some("a@example.com"),
            1,
            &audit("allowed"),
        )
        .await
        .unwrap();
    // Replacing the agent's key cancels the pending request to it, not the
    // settled one.
    let cancelled = store
        .revoke(Principal::Agent, "pc", Some(&[3; 32]), 5)
        .await
        .unwrap();
    assert_eq!(cancelled, 1);
    assert_eq!(
        store.request("x5").await.unwrap().unwrap().state,
        RequestState::Cancelled
    );
    assert_eq!(
        store.request("y6").await.unwrap().unwrap().state,
        RequestState::Allowed
    );
    assert_eq!(store.agent_key_hash("pc").await.unwrap(), Some(vec![3; 32]));
    // Removing the operator: its token is gone; nothing left to cancel.
    assert_eq!(
        store
            .revoke(Principal::Operator, "alice", None, 6)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.operator_by_token_hash(&[1; 32]).await.unwrap(), None);
    assert!(
        store
            .principals(Principal::Operator)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.principals(Principal::Agent).await.unwrap(),
        [("pc".to_string(), 0)]
    );
    let error = store
        .revoke(Principal::Operator, "alice", None, 7)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        StoreError::NotFound {
            kind: "operator",
            ..
        }
    ));
    let events = event_kinds(&store).await;
    assert!(events.ends_with(&[
        "cancelled".to_string(),
        "agent_replaced".to_string(),
        "operator_removed".to_string()
    ]));
}

/// Opens `url` twice: the second open applies no migration again and finds
/// what the first wrote.
async fn reopening_applies_no_migration_twice_and_keeps_data(url: &str) {
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

#[tokio::test]
async fn on_sqlite_a_click_at_or_after_expiry_never_wins() {
    let (_dir, store) = store().await;
    a_click_at_or_after_expiry_never_wins(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_many_simultaneous_decisions_have_exactly_one_winner() {
    let (_dir, store) = store().await;
    many_simultaneous_decisions_have_exactly_one_winner(store).await;
}

#[tokio::test]
async fn on_sqlite_a_settled_request_never_changes_again() {
    let (_dir, store) = store().await;
    a_settled_request_never_changes_again(store).await;
}

#[tokio::test]
async fn on_sqlite_duplicate_names_and_second_sessions_are_named_errors() {
    let (_dir, store) = store().await;
    duplicate_names_and_second_sessions_are_named_errors(store).await;
}

#[tokio::test]
async fn on_sqlite_revoking_a_secret_cancels_what_is_pending_with_it() {
    let (_dir, store) = store().await;
    revoking_a_secret_cancels_what_is_pending_with_it(store).await;
}

#[tokio::test]
async fn on_sqlite_reopening_applies_no_migration_twice_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    reopening_applies_no_migration_twice_and_keeps_data(&doorman_server::default_database_url(
        dir.path(),
    ))
    .await;
}

/// Every guarantee above, on a real PostgreSQL server (one per run: each
/// scenario gets a database of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_same_guarantees_hold() {
    let postgres = Postgres::start().await;
    let open = async || Store::open(&postgres.new_database().await).await.unwrap();
    a_click_at_or_after_expiry_never_wins(open().await).await;
    many_simultaneous_decisions_have_exactly_one_winner(open().await).await;
    a_settled_request_never_changes_again(open().await).await;
    duplicate_names_and_second_sessions_are_named_errors(open().await).await;
    revoking_a_secret_cancels_what_is_pending_with_it(open().await).await;
    reopening_applies_no_migration_twice_and_keeps_data(&postgres.new_database().await).await;
}

#[tokio::test]
async fn other_databases_are_refused_by_name() {
    let error = Store::open("mysql://localhost/doorman").await.unwrap_err();
    assert!(matches!(error, StoreError::UnsupportedDatabase(_)));
    assert_eq!(
        error.to_string(),
        "unsupported database URL \"mysql://localhost/doorman\": use sqlite://FILE or postgres://…"
    );
}
