//! The database's own guarantees, on SQLite (PostgreSQL: `postgres`):
//! one winner per request, a quorum reached once, no decision after expiry,
//! a step computed from a stale read never written, named errors for
//! duplicates, one session per approval, a revoked secret's requests
//! cancelled with it, and other databases refused by name. The helpers that
//! make requests and decide them serve the other `store_*` modules too.

use doorman_core::authorization::{Event, Step};
use doorman_core::{AuditKind, CancelCause, Decision, Outcome, Request, RequestState, Revoked};
use doorman_store::transitions::transition_audit;
use doorman_store::{ComputerId, NewRequest, OperatorId, Principal, RequestRow, Store, StoreError};

pub(crate) async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::database_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    (dir, store)
}

async fn request(store: &Store, id: &str, created_at: i64, expires_at: i64) {
    request_needing(store, id, created_at, expires_at, 1).await;
}

async fn request_needing(
    store: &Store,
    id: &str,
    created_at: i64,
    expires_at: i64,
    required_approvals: u32,
) {
    // Alice's to pc, by their ids once registered (most scenarios need
    // neither, and give the request ids no one has).
    let operator_id = store
        .operator_id("alice")
        .await
        .unwrap()
        .unwrap_or(OperatorId(0));
    let computer_id = store
        .computer_id("pc")
        .await
        .unwrap()
        .unwrap_or(ComputerId(0));
    store
        .create_request(&NewRequest {
            id: id.into(),
            computer: "pc".into(),
            operator: "alice".into(),
            operator_id,
            computer_id,
            operator_ip: "127.0.0.1".into(),
            reason: String::new(),
            service: "run true".into(),
            service_json: r#"{"kind":"command","argv":["true"]}"#.into(),
            created_at,
            expires_at,
            required_approvals,
            approval_valid_for: 0,
            max_session_seconds: 0,
            local_consent: doorman_core::LocalConsent::Off,
            recipients: (0..3u8)
                .map(|n| {
                    let hash = [id.as_bytes()[0].wrapping_add(n * 50); 32];
                    (format!("r{n}@example.com"), hash)
                })
                .collect(),
            passkey: None,
            computer_identity: None,
            sealed: false,
        })
        .await
        .unwrap();
}

/// The kinds of the audit trail's events, oldest first.
pub(crate) async fn event_kinds(store: &Store) -> Vec<AuditKind> {
    let events = store.audit_events().await.unwrap();
    events.into_iter().map(|e| e.event).collect()
}

pub(crate) fn decide(decision: Decision, by: &str, at: i64) -> Event {
    Event::Decide {
        decision,
        by: by.into(),
        at,
    }
}

/// A step computed by the state machine from the request as stored now,
/// ready to persist.
pub(crate) async fn step_of(store: &Store, id: &str, event: Event) -> (RequestRow, Step, i64) {
    let (row, machine) = store.load(id).await.unwrap().unwrap();
    let Request::Pending(pending) = machine else {
        panic!("{id} is settled already")
    };
    let at = event.at();
    (row, pending.apply(event), at)
}

/// Persists a step once (no retry); whether the database took it.
pub(crate) async fn persist(store: &Store, (row, step, at): &(RequestRow, Step, i64)) -> bool {
    let audit = transition_audit(row, step, *at).expect("a step that changes something");
    store
        .persist(row, step, *at, &audit, None, None)
        .await
        .unwrap()
}

pub(crate) async fn a_decision_at_or_after_expiry_never_wins(store: Store) {
    request(&store, "r1", 1_000, 2_000).await;
    // Computed a moment before expiry, written at it: refused.
    let (row, allow, _) = step_of(
        &store,
        "r1",
        decide(Decision::Allow, "r0@example.com", 1_999),
    )
    .await;
    assert!(!persist(&store, &(row.clone(), allow, 2_000)).await);
    // An expiry written before its time: refused.
    let (_, expire, _) = step_of(&store, "r1", Event::Expire { at: 2_000 }).await;
    assert!(!persist(&store, &(row.clone(), expire.clone(), 1_999)).await);
    assert!(persist(&store, &(row, expire, 2_000)).await);
    let row = store.request("r1").await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Expired);
    assert_eq!(row.decided_by, None);
    let kinds = event_kinds(&store).await;
    assert!(
        !kinds.contains(&AuditKind::Allowed),
        "a losing write records nothing"
    );
}

pub(crate) async fn many_simultaneous_decisions_have_exactly_one_winner(store: Store) {
    request(&store, "r2", 0, i64::MAX).await;
    // Every task reads the request before any writes: all hold a step made
    // from the same pending request, then persist at once.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let ready = std::sync::Arc::clone(&ready);
        tasks.push(tokio::spawn(async move {
            let decision = if i % 2 == 0 {
                Decision::Allow
            } else {
                Decision::Deny
            };
            let step = step_of(
                &store,
                "r2",
                decide(decision, &format!("r{i}@example.com"), 10),
            )
            .await;
            ready.wait().await;
            persist(&store, &step).await
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

pub(crate) async fn simultaneous_approvals_reach_a_quorum_exactly_once(store: Store) {
    request_needing(&store, "q7", 0, i64::MAX, 2).await;
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(3));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let store = store.clone();
        let ready = std::sync::Arc::clone(&ready);
        tasks.push(tokio::spawn(async move {
            ready.wait().await;
            // As the broker does: a lost write means someone else changed
            // the request; read it again and reapply.
            loop {
                let (row, machine) = store.load("q7").await.unwrap().unwrap();
                let Request::Pending(pending) = machine else {
                    return;
                };
                let event = decide(Decision::Allow, &format!("r{i}@example.com"), 5 + i);
                let step = pending.apply(event);
                if persist(&store, &(row, step, 5 + i)).await {
                    return;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let row = store.request("q7").await.unwrap().unwrap();
    assert_eq!(row.state, RequestState::Allowed);
    assert_eq!(row.approval_count, 2);
    assert_eq!(store.approvals_of("q7").await.unwrap().len(), 2);
    let kinds = event_kinds(&store).await;
    let count = |kind| kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(
        (count(AuditKind::Approved), count(AuditKind::Allowed)),
        (1, 1)
    );
}

pub(crate) async fn a_settled_request_never_changes_again(store: Store) {
    request(&store, "r3", 0, 10_000).await;
    let stale = step_of(&store, "r3", decide(Decision::Allow, "r1@example.com", 6)).await;
    let deny = step_of(&store, "r3", decide(Decision::Deny, "r0@example.com", 5)).await;
    assert!(persist(&store, &deny).await);
    // Steps computed before the Deny, written after it, change nothing.
    assert!(!persist(&store, &stale).await);
    let expire = step_of_pending_copy(&deny.0, Event::Expire { at: 20_000 });
    assert!(!persist(&store, &expire).await);
    let row = store.request("r3").await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.decided_by.as_deref()),
        (RequestState::Denied, Some("r0@example.com"))
    );
    assert!(matches!(
        store.load("r3").await.unwrap().unwrap().1,
        Request::Settled(_)
    ));
}

/// A step made from a row read earlier (while it was pending).
fn step_of_pending_copy(row: &RequestRow, event: Event) -> (RequestRow, Step, i64) {
    let Request::Pending(pending) = row.machine(Vec::new()) else {
        panic!("not pending")
    };
    let at = event.at();
    (row.clone(), pending.apply(event), at)
}

pub(crate) async fn duplicate_names_and_second_sessions_are_named_errors(store: Store) {
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
    // A pending request opens no session: only an allowed one does.
    assert!(matches!(
        store
            .start_session(Some("r4"), "pc", "alice", 1, None)
            .await,
        Err(StoreError::NoLongerAllowed)
    ));
    let allow = step_of(&store, "r4", decide(Decision::Allow, "it@example.com", 1)).await;
    assert!(persist(&store, &allow).await);
    store
        .start_session(Some("r4"), "pc", "alice", 1, None)
        .await
        .unwrap();
    assert!(matches!(
        store
            .start_session(Some("r4"), "pc", "alice", 2, None)
            .await,
        Err(StoreError::SessionAlreadyStarted)
    ));
    // Sessions without a request (authorization off) are not limited.
    store
        .start_session(None, "pc", "alice", 3, None)
        .await
        .unwrap();
    store
        .start_session(None, "pc", "alice", 4, None)
        .await
        .unwrap();
}

pub(crate) async fn revoking_a_secret_cancels_what_is_pending_with_it(store: Store) {
    store.add_operator("alice", &[1; 32], 0).await.unwrap();
    store.add_agent("pc", &[2; 32], 0).await.unwrap();
    request(&store, "x5", 0, 10_000).await;
    request(&store, "y6", 0, 10_000).await;
    let allow = step_of(&store, "y6", decide(Decision::Allow, "r0@example.com", 1)).await;
    assert!(persist(&store, &allow).await);
    // Replacing the agent's key cancels the pending request to it, not the
    // settled one.
    let cancelled = store
        .revoke(Principal::Agent, "pc", Some(&[3; 32]), 5)
        .await
        .unwrap();
    assert_eq!(cancelled, 1);
    let x5 = store.request("x5").await.unwrap().unwrap();
    assert_eq!(
        x5.outcome(),
        Some(Outcome::Cancelled {
            at: 5,
            cause: CancelCause::Revoked {
                what: Revoked::Computer
            }
        })
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
        AuditKind::Cancelled,
        AuditKind::AgentReplaced,
        AuditKind::OperatorRemoved
    ]));
}

#[tokio::test]
async fn on_sqlite_a_decision_at_or_after_expiry_never_wins() {
    let (_dir, store) = store().await;
    a_decision_at_or_after_expiry_never_wins(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_simultaneous_approvals_reach_a_quorum_exactly_once() {
    let (_dir, store) = store().await;
    simultaneous_approvals_reach_a_quorum_exactly_once(store).await;
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
async fn other_databases_are_refused_by_name() {
    let error = Store::open("mysql://localhost/doorman").await.unwrap_err();
    assert!(matches!(error, StoreError::UnsupportedDatabase(_)));
    assert_eq!(
        error.to_string(),
        "unsupported database URL \"mysql://localhost/doorman\": use sqlite://FILE or postgres://…"
    );
}
