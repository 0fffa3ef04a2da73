//! The server's own checks of what an operator sends, reached with a raw
//! operator that skips the checks `doorman connect` makes first: each bad
//! request is refused as invalid, with a line naming the problem, and
//! nothing reaches the computer; each bound holds at its edge and not one
//! past it.

use doorman_core::AuditKind;
use doorman_test_support::World;
use doorman_test_support::raw::{connect, first_answer};
use doorman_test_support::world::COMPUTER;
use doorman_wire::message::{Refusal, ServerToOperator};
use serde_json::json;

fn command(argv: Vec<String>) -> serde_json::Value {
    json!({"kind": "command", "argv": argv})
}

async fn answer(world: &World, message: serde_json::Value) -> ServerToOperator {
    first_answer(&world.url, &world.operator_token, &message).await
}

/// Refused as invalid, with a message containing `says`.
async fn refused(world: &World, message: serde_json::Value, says: &str) {
    match answer(world, message).await {
        ServerToOperator::Refused {
            reason: Refusal::InvalidRequest,
            message,
        } => assert!(message.contains(says), "{message:?} should say {says:?}"),
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

/// Let through to the computer, which admits it (authorization is off).
async fn admitted(world: &World, message: serde_json::Value) {
    let answer = answer(world, message).await;
    assert_eq!(answer, ServerToOperator::Admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_checks_every_field_itself_and_each_bound_at_its_edge() {
    let world = World::builder().without_email_authorization().start().await;
    let word = |n: usize| vec!["true".to_string(); n];

    refused(
        &world,
        connect(COMPUTER, "line\r\nBcc: x@y", command(word(1))),
        "reason must be one line",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, "ticket \u{202E}24", command(word(1))),
        "U+202E, a bidirectional control",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, "two\u{2029}paragraphs", command(word(1))),
        "U+2029, a paragraph separator",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, &"é".repeat(501), command(word(1))),
        "reason must be at most 500 characters",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, "", command(vec!["tr\0ue".into()])),
        "command contains a NUL byte",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, "", command(Vec::new())),
        "command must not be empty",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, "", command(word(257))),
        "more than 256 arguments",
    )
    .await;
    refused(
        &world,
        connect(COMPUTER, "", command(vec!["x".repeat(64 * 1024 + 1)])),
        "longer than 65536 bytes",
    )
    .await;
    refused(
        &world,
        connect("a b", "", command(word(1))),
        "computer name",
    )
    .await;
    let targets: Vec<String> = (1..=17).map(|port| format!("127.0.0.1:{port}")).collect();
    refused(
        &world,
        connect(COMPUTER, "", json!({"kind": "forward", "targets": targets})),
        "between 1 and 16 forward targets",
    )
    .await;
    refused(
        &world,
        connect(
            COMPUTER,
            "",
            json!({"kind": "shell", "term": "xterm\u{1b}[2J", "rows": 24, "cols": 80}),
        ),
        "terminal name",
    )
    .await;
    let mut extra = connect(COMPUTER, "", command(word(1)));
    extra["surprise"] = json!(1);
    refused(&world, extra, "unknown field").await;
    let kinds: Vec<AuditKind> = world.audit_kinds().await;
    assert!(
        !kinds.contains(&AuditKind::Admitted),
        "nothing reached the computer: {kinds:?}"
    );

    // Each bound at its edge is let through.
    admitted(
        &world,
        connect(COMPUTER, &"é".repeat(500), command(word(1))),
    )
    .await;
    admitted(&world, connect(COMPUTER, "", command(word(256)))).await;
    let long = "x".repeat(64 * 1024 - 4);
    admitted(
        &world,
        connect(COMPUTER, "", command(vec!["echo".into(), long])),
    )
    .await;
}
