//! With `require_passkey`, the computer starts nothing on the server's word
//! alone: against a fake server, every "allowed" whose passkey approval does
//! not verify here is refused, with the reason sent back for the operator.

use doorman_core::Outcome;
use doorman_core::passkey::soft::SoftPasskey;
use doorman_core::passkey::{Assertion, ChallengeParts};
use doorman_proto::Connection;
use doorman_proto::message::{
    AgentToServer, OfferReply, PasskeyRequirement, ServerToAgent, Service, SessionEnd,
};
use doorman_test_support::fake_server::{FakeServer, next_from, offer};
use tokio::net::TcpStream;

const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

struct Agent {
    control: Connection<TcpStream>,
    server: FakeServer,
    _dir: tempfile::TempDir,
}

/// An agent that requires passkey approvals from it@example.com, whose key
/// `pinned` is, dialing a fake server.
async fn agent(pinned: impl Fn(&str) -> SoftPasskey) -> (Agent, SoftPasskey) {
    let server = FakeServer::start().await;
    let key = pinned(&server.url);
    let pin = key.pinned("it@example.com");
    let public = serde_json::to_value(&pin.public_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "server = \"{}\"\nname = \"pc\"\nkey = \"{KEY}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\nrequire_passkey = true\npasskeys = [{{ recipient = \"it@example.com\", id = \"{}\", public_key = {{ alg = \"{}\", key = \"{}\" }} }}]\n",
        server.url,
        pin.id,
        public["alg"].as_str().unwrap(),
        public["key"].as_str().unwrap(),
    );
    let connection = server.welcome_agent(dir.path(), &settings).await;
    (
        Agent {
            control: connection,
            server,
            _dir: dir,
        },
        key,
    )
}

fn command(argv: &str) -> Service {
    Service::Command {
        argv: vec![argv.into()],
    }
}

impl Agent {
    /// Offers request `id` for `service`: the agent's passkey requirement.
    async fn offer(&mut self, id: &str, service: Service) -> PasskeyRequirement {
        let reply = offer(&mut self.control, id, service).await;
        match reply {
            OfferReply::RequireAuthorization {
                passkey: Some(passkey),
                ..
            } => passkey,
            other => panic!("no passkey requirement: {other:?}"),
        }
    }

    /// Tells the agent request `id` was allowed, with these assertions.
    async fn allowed(&mut self, id: &str, assertions: Vec<Assertion>) {
        self.control
            .write_message(&ServerToAgent::Settled {
                request_id: id.into(),
                outcome: Outcome::Allowed {
                    by: "it@example.com".into(),
                    at: 1,
                    reused_from: None,
                },
                assertions,
            })
            .await
            .unwrap();
    }

    /// The agent's refusal of request `id`, as the operator will read it.
    async fn refusal(&mut self, id: &str) -> String {
        next_from(&mut self.control, |message| match message {
            AgentToServer::SessionEnded {
                session_id,
                end: SessionEnd::Failed { message },
            } if session_id == id => Some(message),
            _ => None,
        })
        .await
    }

    /// The session connection the agent opens, and for what.
    async fn session_opened(&self) -> String {
        self.server.accept().await.path
    }
}

/// The assertion the recipient's key makes for request `id` of `service`,
/// as the real server's page would ask it.
fn approve(
    key: &mut SoftPasskey,
    id: &str,
    service: &Service,
    asked: &PasskeyRequirement,
) -> Assertion {
    let service = serde_json::to_string(service).unwrap();
    key.approve(&ChallengeParts {
        request_id: id,
        computer: "pc",
        operator: "alice",
        service: &service,
        expires_at: asked.expires_at,
        nonce: &asked.nonce.0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_passkey_approval_starts_the_session_once() {
    let (mut agent, mut key) = agent(SoftPasskey::new).await;
    let service = command("true");
    let asked = agent.offer("r1", service.clone()).await;
    assert_eq!(asked.passkeys.len(), 1);
    let assertion = approve(&mut key, "r1", &service, &asked);
    agent.allowed("r1", vec![assertion.clone()]).await;
    assert_eq!(agent.session_opened().await, "/v1/session/r1");
    // The same approval sent again for the same request starts nothing:
    // the next session opened is the next request's.
    agent.allowed("r1", vec![assertion]).await;
    let asked = agent.offer("r2", service.clone()).await;
    let next = approve(&mut key, "r2", &service, &asked);
    agent.allowed("r2", vec![next]).await;
    assert_eq!(agent.session_opened().await, "/v1/session/r2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_without_an_assertion_starts_nothing() {
    let (mut agent, _) = agent(SoftPasskey::new).await;
    agent.offer("r1", command("true")).await;
    agent.allowed("r1", Vec::new()).await;
    assert_eq!(
        agent.refusal("r1").await,
        "this computer refused the approval: it needs 1 approvals made with a passkey pinned on this computer, and has 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_made_for_another_request_is_refused() {
    let (mut agent, mut key) = agent(SoftPasskey::new).await;
    let service = command("true");
    let first = agent.offer("r1", service.clone()).await;
    let for_r1 = approve(&mut key, "r1", &service, &first);
    agent.offer("r2", service.clone()).await;
    agent.allowed("r2", vec![for_r1]).await;
    assert_eq!(
        agent.refusal("r2").await,
        "this computer refused the approval: the approval was made for another request (its challenge differs)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_from_a_key_not_pinned_is_refused() {
    let (mut agent, _) = agent(SoftPasskey::new).await;
    let service = command("true");
    let asked = agent.offer("r1", service.clone()).await;
    let mut stranger = SoftPasskey::new(&agent.server.url);
    let assertion = approve(&mut stranger, "r1", &service, &asked);
    agent.allowed("r1", vec![assertion]).await;
    assert_eq!(
        agent.refusal("r1").await,
        "this computer refused the approval: the assertion is from a key that is not pinned on this computer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_command_under_a_valid_assertion_is_refused() {
    let (mut agent, mut key) = agent(SoftPasskey::new).await;
    // The recipient was shown (and approved) `true`; the computer was
    // offered something else under the same request id.
    let asked = agent.offer("r1", command("rm")).await;
    let assertion = approve(&mut key, "r1", &command("true"), &asked);
    agent.allowed("r1", vec![assertion]).await;
    assert_eq!(
        agent.refusal("r1").await,
        "this computer refused the approval: the approval was made for another request (its challenge differs)"
    );
}
