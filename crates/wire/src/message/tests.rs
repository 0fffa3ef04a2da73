//! The messages' JSON: stable, strict, and what covers what.
use super::*;

#[test]
fn an_approval_covers_the_same_service_only() {
    let forward = |targets: &[&str]| Service::Forward {
        targets: targets.iter().map(|t| t.to_string()).collect(),
    };
    let shell = Service::Shell {
        term: "xterm".into(),
        rows: 24,
        cols: 80,
    };
    let vnc = forward(&["127.0.0.1:5900"]);
    assert!(Service::Desktop.covered_by(&Service::Desktop));
    assert!(
        !Service::Desktop.covered_by(&vnc),
        "a forward does not cover the desktop"
    );
    assert!(
        !vnc.covered_by(&Service::Desktop),
        "nor the desktop a forward"
    );
    assert!(!Service::Desktop.covered_by(&shell));
    assert!(forward(&["a:1"]).covered_by(&forward(&["a:1", "b:2"])));
    assert!(!forward(&["a:1", "c:3"]).covered_by(&forward(&["a:1", "b:2"])));
    assert!(shell.covered_by(&Service::Shell {
        term: "vt100".into(),
        rows: 1,
        cols: 1
    }));
    assert_eq!(Service::Desktop.describe(), "view and control the desktop");
}

#[test]
fn messages_have_stable_json() {
    let json = serde_json::to_string(&ServerToOperator::Pending {
        request_id: "r1".into(),
        expires_in: 180,
        recipients: vec!["i***@example.com".into()],
        heartbeat_ms: Some(20_000),
    })
    .unwrap();
    assert_eq!(
        json,
        r#"{"type":"pending","request_id":"r1","expires_in":180,"recipients":["i***@example.com"],"heartbeat_ms":20000}"#
    );
    // A server that does not ping says nothing of it.
    let quiet: ServerToOperator = serde_json::from_str(
        r#"{"type":"pending","request_id":"r1","expires_in":180,"recipients":[]}"#,
    )
    .unwrap();
    assert!(matches!(
        quiet,
        ServerToOperator::Pending {
            heartbeat_ms: None,
            ..
        }
    ));
    let welcome: ServerToAgent = serde_json::from_str(r#"{"type":"welcome"}"#).unwrap();
    assert_eq!(
        welcome,
        ServerToAgent::Welcome {
            heartbeat_ms: None,
            takes_status: false,
            takes_refusals: false,
        }
    );
    assert_eq!(
        serde_json::to_string(&AgentToServer::Pong).unwrap(),
        r#"{"type":"pong"}"#
    );
    let connect: OperatorMessage = serde_json::from_str(
        r#"{"type":"connect","computer":"pc","reason":"r","service":{"kind":"command","argv":["ls"]}}"#,
    )
    .unwrap();
    assert!(matches!(connect, OperatorMessage::Connect { .. }));
}

#[test]
fn the_servers_end_of_a_session_has_stable_json() {
    let ended = SessionMessage::Ended {
        cause: EndCause::TimeLimit,
        message: "the session reached office-pc's time limit of 60 s".into(),
    };
    let json = serde_json::to_string(&ended).unwrap();
    assert_eq!(
        json,
        r#"{"type":"ended","cause":"time_limit","message":"the session reached office-pc's time limit of 60 s"}"#
    );
    assert_eq!(
        serde_json::from_str::<SessionMessage>(&json).unwrap(),
        ended
    );
    // A cause from a newer server is still an end, in its words.
    let newer: SessionMessage =
        serde_json::from_str(r#"{"type":"ended","cause":"solar_flare","message":"m"}"#).unwrap();
    assert_eq!(
        newer,
        SessionMessage::Ended {
            cause: EndCause::Other,
            message: "m".into()
        }
    );
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_str::<OperatorMessage>(
        r#"{"type":"connect","computer":"pc","service":{"kind":"command","argv":["ls"]},"x":1}"#,
    );
    assert!(err.is_err());
    let err = serde_json::from_str::<OperatorMessage>(r#"{"type":"launch"}"#);
    assert!(err.is_err());
}
