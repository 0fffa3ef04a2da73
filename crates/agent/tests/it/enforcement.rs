//! What the agent enforces by itself, whatever the server says: pinned
//! against a fake server that sends what the real one never would.

use doorman_agent::consent::{ConsentRequest, ConsentResponse};
use doorman_core::{Decision, Outcome};
use doorman_test_support::fake_server::{Accepted, FakeServer, next_from, offer};
use doorman_wire::message::{AgentToServer, OfferReply, ServerToAgent, Service, SessionMessage};
use doorman_wire::{Connection, Frame};
use tokio::net::TcpStream;

const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// An agent with these `[desktop_sharing]` and `[services]` lines, dialing
/// the fake server; returns its control connection, welcomed.
async fn agent(
    server: &FakeServer,
    dir: &tempfile::TempDir,
    sharing: &str,
    services: &str,
) -> Connection<TcpStream> {
    server
        .welcome_agent(
            dir.path(),
            &format!(
                "server = \"{}\"\nname = \"pc\"\nkey = \"{KEY}\"\n\n[desktop_sharing]\n{sharing}\n\n[services]\n{services}\n",
                server.url
            ),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_for_a_request_the_agent_never_asked_about_starts_nothing() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut control = agent(
        &server,
        &dir,
        "require_email_authorization = true\nrecipients = [\"it@example.com\"]",
        "shell = true",
    )
    .await;
    control
        .write_message(&ServerToAgent::Settled {
            request_id: "never-seen".into(),
            outcome: Outcome::Allowed {
                by: "it@example.com".into(),
                at: 1,
                reused_from: None,
            },
            assertions: Vec::new(),
        })
        .await
        .unwrap();
    // A request it did ask about, allowed: the session it opens is that one.
    let service = Service::Command {
        argv: vec!["true".into()],
    };
    let reply = offer(&mut control, "asked", service).await;
    assert!(
        matches!(reply, OfferReply::RequireAuthorization { .. }),
        "{reply:?}"
    );
    control
        .write_message(&ServerToAgent::Settled {
            request_id: "asked".into(),
            outcome: Outcome::Allowed {
                by: "it@example.com".into(),
                at: 2,
                reused_from: None,
            },
            assertions: Vec::new(),
        })
        .await
        .unwrap();
    // The first session connection the agent opens is the one it asked
    // about: an outcome it never asked about would have been acted on first.
    let session = server.accept().await;
    assert_eq!(session.path, "/v1/session/asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_command_is_refused_without_a_panic() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut control = agent(
        &server,
        &dir,
        "require_email_authorization = false",
        "shell = true",
    )
    .await;
    let reply = offer(&mut control, "empty", Service::Command { argv: Vec::new() }).await;
    assert!(matches!(reply, OfferReply::Admit { .. }), "{reply:?}");
    let Accepted {
        path,
        mut connection,
    } = server.accept().await;
    assert_eq!(path, "/v1/session/empty");
    let mut said = Vec::new();
    while let Ok(Some(frame)) = connection.read_frame().await {
        if let Frame::Message(payload) = frame {
            said.push(
                doorman_wire::connection::decode_message::<SessionMessage>(&payload).unwrap(),
            );
        }
    }
    assert_eq!(
        said,
        [
            SessionMessage::Error {
                message: "the command is empty".into()
            },
            SessionMessage::Exit {
                code: Some(127),
                signal: None
            }
        ]
    );
    // And the agent is still there.
    control.write_message(&ServerToAgent::Ping).await.unwrap();
    next_from(&mut control, |message| {
        matches!(message, AgentToServer::Pong).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_outside_the_approved_targets_is_refused() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut control = agent(
        &server,
        &dir,
        "require_email_authorization = false",
        "forward = [\"127.0.0.1:9\", \"127.0.0.1:22\"]",
    )
    .await;
    let service = Service::Forward {
        targets: vec!["127.0.0.1:9".into()],
    };
    let reply = offer(&mut control, "fwd", service).await;
    assert!(matches!(reply, OfferReply::Admit { .. }), "{reply:?}");
    let session = server.accept().await;
    assert_eq!(session.path, "/v1/session/fwd");
    // Offered by the computer, but not what this session was approved for.
    control
        .write_message(&ServerToAgent::OpenTunnel {
            session_id: "fwd".into(),
            tunnel_id: "t1".into(),
            target: "127.0.0.1:22".into(),
            sealed: false,
        })
        .await
        .unwrap();
    let (tunnel_id, message) = next_from(&mut control, |message| match message {
        AgentToServer::TunnelRefused { tunnel_id, message } => Some((tunnel_id, message)),
        _ => None,
    })
    .await;
    assert_eq!(tunnel_id, "t1");
    assert!(message.contains("not allowed"), "{message}");
    drop(session);
}

/// Issue 29: the server holds no key of a sealed forward session, and
/// cannot have the agent open one of its tunnels for it in plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_sessions_tunnel_is_refused_in_plain() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = target_listener.local_addr().unwrap().to_string();
    let mut control = agent(
        &server,
        &dir,
        "require_email_authorization = false",
        &format!("forward = [{target:?}]"),
    )
    .await;
    let (_initiator, hello) = doorman_e2e::Initiator::start().unwrap();
    control
        .write_message(&ServerToAgent::Offer {
            request_id: "fwd".into(),
            operator: "alice".into(),
            operator_ip: "127.0.0.1".into(),
            reason: String::new(),
            service: Service::Forward {
                targets: vec![target.clone()],
            },
            e2e: Some(hello),
        })
        .await
        .unwrap();
    let mut session = server.accept().await;
    // The session connection opens with the computer's reply.
    let reply = session.connection.read_message::<serde_json::Value>().await;
    assert_eq!(reply.unwrap().unwrap()["type"], "e2e_reply");
    for sealed in [false, true] {
        control
            .write_message(&ServerToAgent::OpenTunnel {
                session_id: "fwd".into(),
                tunnel_id: format!("t-{sealed}"),
                target: target.clone(),
                sealed,
            })
            .await
            .unwrap();
        if sealed {
            // Asked as the session is: the agent opens it.
            let tunnel = server.accept().await;
            assert_eq!(tunnel.path, "/v1/session/t-true");
            continue;
        }
        let (tunnel_id, message) = next_from(&mut control, |message| match message {
            AgentToServer::TunnelRefused { tunnel_id, message } => Some((tunnel_id, message)),
            _ => None,
        })
        .await;
        assert_eq!(tunnel_id, "t-false");
        assert!(message.contains("not allowed"), "{message}");
    }
}

/// Tells the agent request `id` was allowed (reusing `reused_from`).
async fn allowed(control: &mut Connection<TcpStream>, id: &str, reused_from: Option<&str>) {
    control
        .write_message(&ServerToAgent::Settled {
            request_id: id.into(),
            outcome: Outcome::Allowed {
                by: "it@example.com".into(),
                at: 1,
                reused_from: reused_from.map(str::to_string),
            },
            assertions: Vec::new(),
        })
        .await
        .unwrap();
}

/// The reason the agent gives the server for refusing allowed request `id`.
async fn refusal(control: &mut Connection<TcpStream>, id: &str) -> String {
    let refused = next_from(control, |message| match message {
        AgentToServer::Refused { request_id, reason } if request_id == id => Some(reason),
        _ => None,
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("the agent refuses within 10 s")
}

/// Issue 25: a reused approval (`approval_valid_for`) keeps the local
/// consent the computer requires; a server that lets the reuse in without
/// the local Allow is refused, with the reason for the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_approval_without_the_required_local_allow_starts_nothing() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut control = agent(
        &server,
        &dir,
        "require_email_authorization = true\nrecipients = [\"it@example.com\"]\napproval_valid_for = 600\nlocal_consent = \"required\"",
        "shell = true",
    )
    .await;
    let socket = doorman_agent::consent::socket_path(&dir.path().join("agent.toml"), None);
    let allow_here = |id: &str| {
        let request = ConsentRequest::Allow { id: id.into() };
        let socket = socket.clone();
        async move { doorman_agent::consent::call(&socket, &request).await }
    };
    let service = Service::Command {
        argv: vec!["true".into()],
    };
    // A first approval, allowed here too: its session starts.
    offer(&mut control, "first-request", service.clone()).await;
    assert_eq!(
        allow_here("first-request").await.unwrap(),
        ConsentResponse::Answered {
            id: "first-request".into(),
            decision: Decision::Allow
        }
    );
    allowed(&mut control, "first-request", None).await;
    assert_eq!(server.accept().await.path, "/v1/session/first-request");

    // Inside the window the agent offers to reuse it…
    let reply = offer(&mut control, "second-request", service.clone()).await;
    let OfferReply::RequireAuthorization { reuse, .. } = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(reuse.as_deref(), Some("first-request"));
    // …but a reuse let in without the local Allow starts nothing.
    allowed(&mut control, "second-request", Some("first-request")).await;
    assert_eq!(
        refusal(&mut control, "second-request").await,
        "nobody at the computer allowed it, and it requires local consent"
    );

    // With the local Allow, the reuse starts its session.
    offer(&mut control, "third-request", service).await;
    allow_here("third-request").await.unwrap();
    allowed(&mut control, "third-request", Some("first-request")).await;
    assert_eq!(server.accept().await.path, "/v1/session/third-request");
}

/// Issue 26: requests the server refused after the agent answered (it
/// never settles them) piled up in the agent's memory, which was wiped at
/// 1,024 entries: a request still awaited was forgotten, and its Allow
/// ignored. Now none is forgotten before its time, and a memory full of
/// requests still awaited refuses the next offer instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_server_refused_never_push_out_one_still_awaited() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut control = agent(
        &server,
        &dir,
        "require_email_authorization = true\nrecipients = [\"it@example.com\"]",
        "shell = true",
    )
    .await;
    let service = Service::Command {
        argv: vec!["true".into()],
    };
    let reply = offer(&mut control, "awaited", service.clone()).await;
    assert!(
        matches!(reply, OfferReply::RequireAuthorization { .. }),
        "{reply:?}"
    );
    // 1,100 more, each refused by the server after the agent answered (the
    // operator went away, say), which never tells the agent.
    let mut refused_here = 0;
    for i in 0..1100 {
        match offer(&mut control, &format!("refused-{i}"), service.clone()).await {
            OfferReply::RequireAuthorization { .. } => {}
            OfferReply::Refuse { message } => {
                assert!(message.contains("waiting for authorization"), "{message}");
                refused_here += 1;
            }
            reply => panic!("{reply:?}"),
        }
    }
    // The memory holds 1,024 requests; those that did not fit were refused
    // rather than a request still awaited forgotten.
    assert_eq!(refused_here, 1100 - 1023);
    allowed(&mut control, "awaited", None).await;
    assert_eq!(server.accept().await.path, "/v1/session/awaited");
}
