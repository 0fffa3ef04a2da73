//! Access rules: an operator reaches only the computers and services its
//! grants match; anything else looks exactly like an unknown computer and
//! sends no email; revoking a grant ends what it allowed; an operator
//! removed and added again under its name has none of the old grants.

use doorman_client::{ConnectError, EndCause, SessionKind};
use doorman_core::access::{ComputerPattern, ServiceKind, ServiceSet};
use doorman_core::{AuditKind, RequestState};
use doorman_server::admin::{self, NewOperator};
use doorman_store::{CutSession, Principal};
use doorman_test_support::World;
use doorman_test_support::world::COMPUTER;

fn patterns(list: &str) -> Vec<ComputerPattern> {
    list.split(',').map(|p| p.parse().unwrap()).collect()
}

/// Adds operator `name` with these grants (none: it reaches nothing).
async fn operator(world: &World, name: &str, grants: Option<(&str, &str)>) -> String {
    let new = match grants {
        Some((computers, services)) => NewOperator {
            computers: patterns(computers),
            services: services.parse().unwrap(),
            email: None,
        },
        None => NewOperator::default(),
    };
    admin::add_operator_with(world.broker.store(), name, &new)
        .await
        .unwrap()
}

async fn nothing_was_requested(world: &World) {
    let kinds: Vec<_> = world.audit_kinds().await;
    assert!(!kinds.contains(&AuditKind::Requested), "{kinds:?}");
    assert!(!kinds.contains(&AuditKind::EmailQueued), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_without_a_grant_sees_what_an_unknown_computer_looks_like() {
    let world = World::start().await;
    let bob = operator(&world, "bob", None).await;
    let forbidden = world
        .connect_to(COMPUTER, &bob, &["true"], "")
        .finish()
        .await;
    let unknown = world
        .connect_to("no-such-pc", &bob, &["true"], "")
        .finish()
        .await;
    assert_eq!(
        forbidden,
        Err(ConnectError::UnknownComputer(COMPUTER.into()))
    );
    assert_eq!(
        unknown,
        Err(ConnectError::UnknownComputer("no-such-pc".into()))
    );
    assert_eq!(forbidden.unwrap_err().exit_code(), 242);
    nothing_was_requested(&world).await;
    // Only the audit trail tells the two apart.
    let refused = world.wait_for_audit("refused_access").await;
    assert_eq!(refused.actor.as_deref(), Some("bob"));
    assert_eq!(refused.computer.as_deref(), Some(COMPUTER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_covers_only_its_computers_and_services() {
    let world = World::builder().forward(&["127.0.0.1:9"]).start().await;
    let carol = operator(&world, "carol", Some(("office-*", "forward"))).await;
    // A command is not a forward.
    let command = world
        .connect_to(COMPUTER, &carol, &["true"], "")
        .finish()
        .await;
    assert_eq!(command, Err(ConnectError::UnknownComputer(COMPUTER.into())));
    nothing_was_requested(&world).await;
    // A forward to a computer the pattern matches asks for approval.
    let forward = world.connect_with(
        COMPUTER,
        &carol,
        SessionKind::Forward(vec!["0:127.0.0.1:9".parse().unwrap()]),
        "",
        Box::new(tokio::io::empty()),
    );
    forward.event("pending").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grant_cancels_the_pending_request_and_ends_the_session() {
    let world = World::builder().start().await;
    let dave = operator(&world, "dave", Some(("office-pc,lab-*", "shell,command"))).await;

    // A running session…
    let running = world.connect_to(COMPUTER, &dave, &["sleep", "60"], "");
    running.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    running.event("session_started").await;
    // …and a pending request.
    let waiting = world.connect_to(COMPUTER, &dave, &["true"], "");
    let id = waiting.request_id().await;

    // Revoking another pattern changes nothing, and says so.
    let revoked = admin::revoke_grant(world.broker.store(), "dave", &patterns("lab-*"))
        .await
        .unwrap();
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    assert_eq!(
        admin::describe_revocation(&revoked),
        "revoked; no pending request cancelled; no running session is affected"
    );

    let revoked = admin::revoke_grant(world.broker.store(), "dave", &patterns("office-pc"))
        .await
        .unwrap();
    assert_eq!(revoked.cancelled, 1);
    // Issue 31: which running sessions end.
    assert_eq!(
        revoked.sessions,
        [CutSession {
            operator: "dave".into(),
            computer: COMPUTER.into(),
            service: Some(ServiceKind::Command),
        }]
    );
    assert_eq!(
        admin::describe_revocation(&revoked),
        "revoked; 1 pending request cancelled; 1 running session ends within a heartbeat (20 s): dave → office-pc (command)"
    );
    world.pass_a_heartbeat();
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    let result = waiting.finish().await;
    assert_eq!(result, Err(ConnectError::UnknownComputer(COMPUTER.into())));
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: the operator's access to this computer was revoked")
    );
    // The running session hears it in the server's words.
    let result = running.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::Ended {
            cause: EndCause::AccessRevoked,
            message: format!("your access to {COMPUTER} was revoked"),
        })
    );
    // The links of the cancelled request say why (its emails may never
    // have gone out).
    let (_, page) = world.page(&world.link_of(&id, 1)).await;
    assert!(
        page.contains("access to this computer was revoked"),
        "{page}"
    );
    assert!(!page.contains("Allow Session"), "{page}");
}

/// Issue 25: `operator remove bob` left bob's grants, so that a new
/// `operator add bob` ("reaches no computer until granted") reached the
/// computer and its connect sent emails. Removing bob ends everything he
/// had; the new bob is someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_removed_and_added_again_reaches_nothing_the_old_one_did() {
    let world = World::builder().start().await;
    let old_bob = operator(&world, "bob", Some(("*", "shell,command,forward"))).await;
    let old_console = world.console_cookie(&old_bob).await;
    // The old bob has a session running and a request pending.
    let running = world.connect_to(COMPUTER, &old_bob, &["sleep", "60"], "");
    let id = running.request_id().await;
    world.click(&world.link_of(&id, 0), "allow").await;
    running.event("session_started").await;
    let waiting = world.connect_to(COMPUTER, &old_bob, &["true"], "");
    let pending = waiting.request_id().await;

    let cancelled = admin::remove(world.broker.store(), Principal::Operator, "bob")
        .await
        .unwrap();
    assert_eq!(cancelled, 1);
    world.pass_a_heartbeat();
    assert_eq!(world.state_of(&pending).await, RequestState::Cancelled);
    assert_eq!(waiting.finish().await, Err(ConnectError::TokenRevoked));
    assert_eq!(
        running.finish().await,
        Err(ConnectError::Ended {
            cause: EndCause::TokenRevoked,
            message: "your operator token was replaced or removed".into(),
        })
    );
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: the operator's token was replaced or removed")
    );

    let emails = world.emails_queued().await;
    let new_bob = operator(&world, "bob", None).await;
    let grants = admin::grants(world.broker.store()).await.unwrap();
    assert!(grants.iter().all(|row| row.operator != "bob"), "{grants:?}");
    let refused = world
        .connect_to(COMPUTER, &new_bob, &["true"], "")
        .finish()
        .await;
    assert_eq!(refused, Err(ConnectError::UnknownComputer(COMPUTER.into())));
    assert_eq!(world.emails_queued().await, emails, "no email was sent");
    // The old bob's console session is dead; the new bob's lists nothing.
    let computers = |cookie: String| {
        world
            .http
            .get(format!("{}/console/computers", world.url))
            .header(reqwest::header::COOKIE, cookie)
            .send()
    };
    let old = computers(old_console).await.unwrap();
    assert_eq!(old.status(), reqwest::StatusCode::UNAUTHORIZED);
    let new = computers(world.console_cookie(&new_bob).await)
        .await
        .unwrap();
    assert_eq!(new.status(), reqwest::StatusCode::OK);
    assert_eq!(new.text().await.unwrap(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operators_requests_never_lock_another_out_of_a_computer() {
    let world = World::builder()
        .limits(doorman_server::Limits {
            max_requests_per_hour: 3,
            ..doorman_server::Limits::default()
        })
        .start()
        .await;
    // An attacker with a grant asks and cancels at once, over and over.
    let mallory = operator(&world, "mallory", Some(("*", "command"))).await;
    for _ in 0..3 {
        let mut asking = world.connect_to(COMPUTER, &mallory, &["true"], "");
        asking.event("pending").await;
        asking.interrupt();
        assert_eq!(asking.finish().await, Err(ConnectError::Cancelled));
    }
    let refused = world
        .connect_to(COMPUTER, &mallory, &["true"], "")
        .finish()
        .await;
    assert!(
        matches!(refused, Err(ConnectError::Limited(_))),
        "{refused:?}"
    );
    // Everyone else still gets through.
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
}

#[tokio::test]
async fn grants_are_listed_and_revoking_an_unknown_one_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = doorman_store::Store::open(&doorman_server::default_database_url(dir.path()))
        .await
        .unwrap();
    admin::add_operator_with(&store, "erin", &NewOperator::default())
        .await
        .unwrap();
    admin::grant(
        &store,
        "erin",
        &patterns("web-*,db-1"),
        "shell".parse().unwrap(),
    )
    .await
    .unwrap();
    // Granting a pattern again replaces its services.
    admin::grant(&store, "erin", &patterns("db-1"), ServiceSet::ALL)
        .await
        .unwrap();
    let listed: Vec<(String, String)> = admin::grants(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row.grant.computers.to_string(),
                row.grant.services.to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                "db-1".to_string(),
                "shell,command,forward,files".to_string()
            ),
            ("web-*".to_string(), "shell".to_string())
        ]
    );
    let error = admin::revoke_grant(&store, "erin", &patterns("mail-*"))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no grant of computers named \"mail-*\"");
    let error = admin::grant(&store, "nobody", &patterns("*"), ServiceSet::ALL)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no operator named \"nobody\"");
}
