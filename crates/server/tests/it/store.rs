//! The database's own guarantees, on SQLite and on PostgreSQL: one winner
//! per request, a quorum reached once, no decision after expiry, a step
//! computed from a stale read never written, named errors for duplicates,
//! one session per approval, a revoked secret's requests cancelled with
//! it, and a name removed and added again inheriting nothing.

use doorman_core::access::{ComputerPattern, ServiceSet};
use doorman_core::authorization::{Event, Step};
use doorman_core::{AuditKind, CancelCause, Decision, Outcome, Request, RequestState, Revoked};
use doorman_store::recordings::RecordingOf;
use doorman_store::transitions::transition_audit;
use doorman_store::{
    Block, ComputerId, NewRequest, OperatorId, Principal, RequestRow, Store, StoreError,
};
use doorman_test_support::postgres::Postgres;

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = doorman_server::default_database_url(dir.path());
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
        })
        .await
        .unwrap();
}

/// The kinds of the audit trail's events, oldest first.
async fn event_kinds(store: &Store) -> Vec<AuditKind> {
    let events = store.audit_events().await.unwrap();
    events.into_iter().map(|e| e.event).collect()
}

fn decide(decision: Decision, by: &str, at: i64) -> Event {
    Event::Decide {
        decision,
        by: by.into(),
        at,
    }
}

/// A step computed by the state machine from the request as stored now,
/// ready to persist.
async fn step_of(store: &Store, id: &str, event: Event) -> (RequestRow, Step, i64) {
    let (row, machine) = store.load(id).await.unwrap().unwrap();
    let Request::Pending(pending) = machine else {
        panic!("{id} is settled already")
    };
    let at = event.at();
    (row, pending.apply(event), at)
}

/// Persists a step once (no retry); whether the database took it.
async fn persist(store: &Store, (row, step, at): &(RequestRow, Step, i64)) -> bool {
    let audit = transition_audit(row, step, *at).expect("a step that changes something");
    store
        .persist(row, step, *at, &audit, None, None)
        .await
        .unwrap()
}

async fn a_decision_at_or_after_expiry_never_wins(store: Store) {
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

async fn many_simultaneous_decisions_have_exactly_one_winner(store: Store) {
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

async fn simultaneous_approvals_reach_a_quorum_exactly_once(store: Store) {
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

async fn a_settled_request_never_changes_again(store: Store) {
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
    // A pending request opens no session: only an allowed one does.
    assert!(matches!(
        store.start_session(Some("r4"), "pc", "alice", 1).await,
        Err(StoreError::NoLongerAllowed)
    ));
    let allow = step_of(&store, "r4", decide(Decision::Allow, "it@example.com", 1)).await;
    assert!(persist(&store, &allow).await);
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

/// Refusals in one minute are one row with a count; a page view is kept
/// once per recipient and request; pruning deletes by age and says so; ACME
/// rows replace each other.
async fn the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace(store: Store) {
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
async fn on_sqlite_the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace() {
    let (_dir, store) = store().await;
    the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace(store).await;
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
async fn on_sqlite_reopening_applies_no_migration_twice_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    reopening_applies_no_migration_twice_and_keeps_data(&doorman_server::default_database_url(
        dir.path(),
    ))
    .await;
}

/// A request (made at 0, expiring at 10_000) of the registered `operator`
/// to the registered `computer`, whose Allow covers `valid_for` seconds.
async fn request_of(store: &Store, id: &str, operator: &str, computer: &str, valid_for: u32) {
    store
        .create_request(&NewRequest {
            id: id.into(),
            computer: computer.into(),
            operator: operator.into(),
            operator_id: store.operator_id(operator).await.unwrap().unwrap(),
            computer_id: store.computer_id(computer).await.unwrap().unwrap(),
            operator_ip: "127.0.0.1".into(),
            reason: String::new(),
            service: "run true".into(),
            service_json: r#"{"kind":"command","argv":["true"]}"#.into(),
            created_at: 0,
            expires_at: 10_000,
            required_approvals: 1,
            approval_valid_for: valid_for,
            max_session_seconds: 0,
            local_consent: doorman_core::LocalConsent::Off,
            recipients: (0..3u8)
                .map(|n| {
                    let hash = [id.as_bytes()[0].wrapping_add(n * 50); 32];
                    (format!("r{n}@example.com"), hash)
                })
                .collect(),
            passkey: None,
        })
        .await
        .unwrap();
}

/// "I did not expect this" on request `id`: denied, and its operator
/// blocked from its computer until 1_000_000.
async fn report(store: &Store, id: &str, at: i64) {
    let (row, step, at) = step_of(store, id, decide(Decision::Report, "r0@example.com", at)).await;
    let block = Block {
        operator: row.operator_id.unwrap(),
        computer: row.computer_id.unwrap(),
        until: 1_000_000,
        reported_by: "r0@example.com".into(),
    };
    let audit = transition_audit(&row, &step, at).unwrap();
    assert!(
        store
            .persist(&row, &step, at, &audit, Some(&block), None)
            .await
            .unwrap()
    );
}

/// Issue 25: `operator remove bob` left bob's grants (and blocks, reuse
/// windows, recordings) for the next `operator add bob`. Ids are never
/// given twice; what an operator or a computer had is its id's and goes
/// with it; the administrators' history keeps its names.
async fn a_name_removed_and_added_again_inherits_nothing(store: Store) {
    store.add_operator("bob", &[1; 32], 0).await.unwrap();
    store.add_agent("pc", &[2; 32], 0).await.unwrap();
    let bob = store.operator_id("bob").await.unwrap().unwrap();
    let pc = store.computer_id("pc").await.unwrap().unwrap();
    store
        .grant(
            "bob",
            &["*".parse::<ComputerPattern>().unwrap()],
            ServiceSet::ALL,
            0,
        )
        .await
        .unwrap();
    // Bob is blocked from pc, holds a reuse window there, and was recorded.
    request_of(&store, "b1", "bob", "pc", 0).await;
    report(&store, "b1", 1).await;
    request_of(&store, "c2", "bob", "pc", 600).await;
    let allow = step_of(&store, "c2", decide(Decision::Allow, "r0@example.com", 2)).await;
    assert!(persist(&store, &allow).await);
    let of = RecordingOf {
        request_id: Some("c2"),
        computer: "pc",
        computer_id: pc,
        operator: "bob",
        operator_id: bob,
    };
    store.start_recording(1, &of, 3).await.unwrap();
    assert_eq!(
        store.blocked_until(bob, pc, 10).await.unwrap(),
        Some(1_000_000)
    );
    assert!(
        store
            .reusable_approval("c2", bob, pc, 10)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.operator_recordings(bob).await.unwrap().len(), 1);

    // Removed (the last one added: SQLite would hand its id out again
    // without AUTOINCREMENT) and added again.
    store
        .revoke(Principal::Operator, "bob", None, 20)
        .await
        .unwrap();
    let removed = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event == AuditKind::OperatorRemoved)
        .unwrap();
    assert_eq!(
        removed.detail.as_deref(),
        Some("the operator \"bob\" was removed with its 1 grant(s) and 1 block(s)")
    );
    store.add_operator("bob", &[3; 32], 30).await.unwrap();
    let new_bob = store.operator_id("bob").await.unwrap().unwrap();
    assert_ne!(new_bob, bob, "an id is never given twice");
    assert!(store.grants_of("bob").await.unwrap().is_empty());
    assert!(store.grants_of_operator(new_bob).await.unwrap().is_empty());
    assert!(store.grants().await.unwrap().is_empty());
    assert!(store.blocks(40).await.unwrap().is_empty());
    assert_eq!(store.blocked_until(new_bob, pc, 40).await.unwrap(), None);
    for who in [bob, new_bob] {
        assert!(
            store
                .reusable_approval("c2", who, pc, 40)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert!(store.operator_recordings(new_bob).await.unwrap().is_empty());
    assert_eq!(
        store
            .requests_by_operator_since(new_bob, pc, -1)
            .await
            .unwrap(),
        0
    );
    // Administrators keep the history, under the name it had.
    let kept = store.recordings(None, Some("bob")).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].operator_id, Some(bob));
    assert_eq!(store.request("c2").await.unwrap().unwrap().operator, "bob");

    // The same for a computer: carol is blocked from pc and holds a window
    // there; pc is removed and another added under its name.
    store.add_operator("carol", &[4; 32], 50).await.unwrap();
    let carol = store.operator_id("carol").await.unwrap().unwrap();
    store
        .grant(
            "carol",
            &["pc".parse::<ComputerPattern>().unwrap()],
            ServiceSet::ALL,
            50,
        )
        .await
        .unwrap();
    request_of(&store, "e3", "carol", "pc", 0).await;
    report(&store, "e3", 51).await;
    request_of(&store, "f4", "carol", "pc", 600).await;
    let allow = step_of(&store, "f4", decide(Decision::Allow, "r0@example.com", 52)).await;
    assert!(persist(&store, &allow).await);
    store
        .revoke(Principal::Agent, "pc", None, 60)
        .await
        .unwrap();
    store.add_agent("pc", &[5; 32], 70).await.unwrap();
    let new_pc = store.computer_id("pc").await.unwrap().unwrap();
    assert_ne!(new_pc, pc, "an id is never given twice");
    assert!(store.blocks(80).await.unwrap().is_empty());
    assert_eq!(store.blocked_until(carol, new_pc, 80).await.unwrap(), None);
    assert!(
        store
            .reusable_approval("f4", carol, new_pc, 80)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .allowed_without_session(new_pc, -1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .requests_by_operator_since(carol, new_pc, -1)
            .await
            .unwrap(),
        0
    );
    // Grants name computers by pattern: carol's "pc" is carol's, and
    // matches whichever computer is called that.
    assert_eq!(store.grants_of_operator(carol).await.unwrap().len(), 1);
}

/// A database from before ids (version 9) holding what a removed name
/// left behind: after the upgrade its new holder has none of it, and what
/// everyone else had keeps working.
async fn leftovers_of_removed_names_are_not_inherited_across_the_upgrade(url: &str) {
    drop(Store::open_migrated_to(url, 9).await.unwrap());
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let insert = async |sql: &str, text: [&str; 2], at: i64| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(text[0])
            .bind(text[1])
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    };
    // alice since 100; the first bob was removed at 250, after being given
    // a grant, a block and a reuse window and recorded; the second bob was
    // added at 300 and given a grant of his own.
    for (name, hash, at) in [("alice", 1u8, 100i64), ("bob", 2, 300)] {
        sqlx::query("INSERT INTO operators (name, token_hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(vec![hash; 32])
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO agents (name, key_hash, created_at) VALUES ('pc', $1, 50)")
        .bind(vec![3u8; 32])
        .execute(&pool)
        .await
        .unwrap();
    let grant = "INSERT INTO grants (operator, computers, services, created_at) VALUES ($1, $2, 'shell,command,forward', $3)";
    insert(grant, ["alice", "*"], 100).await;
    insert(grant, ["bob", "*"], 150).await;
    insert(grant, ["bob", "lab-*"], 300).await;
    let block = "INSERT INTO blocks (operator, computer, until, reported_by, created_at) VALUES ($1, $2, 1000000, 'r0@example.com', $3)";
    insert(block, ["alice", "pc"], 160).await;
    insert(block, ["bob", "pc"], 170).await;
    let allowed = "INSERT INTO requests (id, computer, operator, operator_ip, reason, service, state, created_at, expires_at, settled_at, decided_by, approval_valid_for, reusable_until)
         VALUES ($1, 'pc', $2, '127.0.0.1', '', 'run true', 'allowed', $3, 10000, 200, 'r0@example.com', 600, 600000)";
    insert(allowed, ["g1", "alice"], 110).await;
    insert(allowed, ["h2", "bob"], 180).await;
    let recording = "INSERT INTO recordings (session_id, computer, operator, started_at, request_id) VALUES ($3, 'pc', $1, $3, $2)";
    insert(recording, ["bob", "h2"], 190).await;
    insert(recording, ["bob", "i3"], 310).await;
    pool.close().await;

    let store = Store::open(url).await.unwrap();
    let grants: Vec<(String, String)> = store
        .grants()
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.operator, row.grant.computers.to_string()))
        .collect();
    assert_eq!(
        grants,
        [
            ("alice".to_string(), "*".to_string()),
            ("bob".to_string(), "lab-*".to_string())
        ]
    );
    let blocks = store.blocks(1_000).await.unwrap();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].operator, "alice");
    let alice = store.operator_id("alice").await.unwrap().unwrap();
    let bob = store.operator_id("bob").await.unwrap().unwrap();
    let pc = store.computer_id("pc").await.unwrap().unwrap();
    assert_eq!(
        store.blocked_until(alice, pc, 1_000).await.unwrap(),
        Some(1_000_000)
    );
    assert!(
        store
            .reusable_approval("g1", alice, pc, 1_000)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .reusable_approval("h2", bob, pc, 1_000)
            .await
            .unwrap()
            .is_none()
    );
    let recordings: Vec<i64> = store
        .operator_recordings(bob)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(recordings, [310]);
    let notices = store.take_upgrade_notices().await.unwrap();
    assert!(
        notices.iter().any(|n| n.starts_with("identities:")),
        "{notices:?}"
    );
    // And from now on an id is never given twice.
    store
        .revoke(Principal::Operator, "bob", None, 2_000)
        .await
        .unwrap();
    store.add_operator("bob", &[4; 32], 2_001).await.unwrap();
    assert_ne!(store.operator_id("bob").await.unwrap(), Some(bob));
}

#[tokio::test]
async fn on_sqlite_a_name_removed_and_added_again_inherits_nothing() {
    let (_dir, store) = store().await;
    a_name_removed_and_added_again_inherits_nothing(store).await;
}

#[tokio::test]
async fn on_sqlite_leftovers_of_removed_names_are_not_inherited_across_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    leftovers_of_removed_names_are_not_inherited_across_the_upgrade(
        &doorman_server::default_database_url(dir.path()),
    )
    .await;
}

/// Every guarantee above, on a real PostgreSQL server (one per run: each
/// scenario gets a database of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_same_guarantees_hold() {
    let postgres = Postgres::start().await;
    let open = async || Store::open(&postgres.new_database().await).await.unwrap();
    a_decision_at_or_after_expiry_never_wins(open().await).await;
    many_simultaneous_decisions_have_exactly_one_winner(open().await).await;
    simultaneous_approvals_reach_a_quorum_exactly_once(open().await).await;
    a_settled_request_never_changes_again(open().await).await;
    duplicate_names_and_second_sessions_are_named_errors(open().await).await;
    revoking_a_secret_cancels_what_is_pending_with_it(open().await).await;
    the_trail_collapses_repeats_prunes_by_age_and_acme_rows_replace(open().await).await;
    reopening_applies_no_migration_twice_and_keeps_data(&postgres.new_database().await).await;
    operators_from_before_access_rules_keep_reaching_everything(&postgres.new_database().await)
        .await;
    a_name_removed_and_added_again_inherits_nothing(open().await).await;
    leftovers_of_removed_names_are_not_inherited_across_the_upgrade(&postgres.new_database().await)
        .await;
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

/// Operators that existed before access rules keep reaching everything,
/// and the server is told so once.
async fn operators_from_before_access_rules_keep_reaching_everything(url: &str) {
    let old = Store::open_migrated_to(url, 4).await.unwrap();
    old.add_operator("alice", &[1; 32], 0).await.unwrap();
    drop(old);
    let store = Store::open(url).await.unwrap();
    let grants = store.grants_of("alice").await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].computers.as_str(), "*");
    // Everything there was then: a grant gains no service added later.
    let then: doorman_core::access::ServiceSet = "shell,command,forward".parse().unwrap();
    assert_eq!(grants[0].services, then);
    let notices = store.take_upgrade_notices().await.unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("granted every computer (*)"),
        "{notices:?}"
    );
    assert!(store.take_upgrade_notices().await.unwrap().is_empty());
    // An operator added after the upgrade gets nothing by itself.
    store.add_operator("bob", &[2; 32], 1).await.unwrap();
    assert!(store.grants_of("bob").await.unwrap().is_empty());
}

#[tokio::test]
async fn on_sqlite_operators_from_before_access_rules_keep_reaching_everything() {
    let dir = tempfile::tempdir().unwrap();
    operators_from_before_access_rules_keep_reaching_everything(
        &doorman_server::default_database_url(dir.path()),
    )
    .await;
}
