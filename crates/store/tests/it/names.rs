//! Names in the database, on SQLite (PostgreSQL: `postgres`): a name
//! removed and added again inherits nothing, not even across the upgrade
//! that dropped what removed names left, and operators from before access
//! rules keep reaching everything.

use crate::decisions::{decide, persist, step_of, store};
use doorman_core::access::{ComputerPattern, ServiceSet};
use doorman_core::{AuditKind, Decision};
use doorman_store::recordings::RecordingOf;
use doorman_store::transitions::transition_audit;
use doorman_store::{Block, NewRequest, Principal, Store};

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
            computer_identity: None,
            sealed: false,
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
pub(crate) async fn a_name_removed_and_added_again_inherits_nothing(store: Store) {
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
        sealed: false,
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
            .admission_counts(new_bob, pc, 0, -1)
            .await
            .unwrap()
            .recent,
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
            .admission_counts(carol, new_pc, 0, -1)
            .await
            .unwrap()
            .recent,
        0
    );
    // Grants name computers by pattern: carol's "pc" is carol's, and
    // matches whichever computer is called that.
    assert_eq!(store.grants_of_operator(carol).await.unwrap().len(), 1);
}

/// A database from before ids (version 9) holding what a removed name
/// left behind: after the upgrade its new holder has none of it, and what
/// everyone else had keeps working.
pub(crate) async fn leftovers_of_removed_names_are_not_inherited_across_the_upgrade(url: &str) {
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

/// Operators that existed before access rules keep reaching everything,
/// and the server is told so once.
pub(crate) async fn operators_from_before_access_rules_keep_reaching_everything(url: &str) {
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
async fn on_sqlite_a_name_removed_and_added_again_inherits_nothing() {
    let (_dir, store) = store().await;
    a_name_removed_and_added_again_inherits_nothing(store).await;
}

#[tokio::test]
async fn on_sqlite_leftovers_of_removed_names_are_not_inherited_across_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    leftovers_of_removed_names_are_not_inherited_across_the_upgrade(&crate::database_url(
        dir.path(),
    ))
    .await;
}

#[tokio::test]
async fn on_sqlite_operators_from_before_access_rules_keep_reaching_everything() {
    let dir = tempfile::tempdir().unwrap();
    operators_from_before_access_rules_keep_reaching_everything(&crate::database_url(dir.path()))
        .await;
}
