//! With `require_passkey`, the computer starts nothing on the server's word
//! alone: against a fake server, every "allowed" whose passkey approval does
//! not verify here is refused, with the reason sent back for the operator
//! and the audit trail; and an approval made without a passkey is not
//! reused once the computer requires them.

use doorman_core::Outcome;
use doorman_core::passkey::soft::SoftPasskey;
use doorman_core::passkey::{Assertion, ChallengeParts};
use doorman_test_support::fake_server::{FakeServer, next_from, offer};
use doorman_wire::Connection;
use doorman_wire::message::{
    AgentToServer, OfferReply, PasskeyRequirement, ServerToAgent, Service,
};
use tokio::net::TcpStream;

const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

struct Agent {
    control: Connection<TcpStream>,
    server: FakeServer,
    _dir: tempfile::TempDir,
}

/// Settings that pin `key` for it@example.com (and require passkey
/// approvals, with `require_passkey`), with `more` lines of
/// `[desktop_sharing]`, dialing `server`.
fn settings(server: &str, key: &SoftPasskey, require_passkey: bool, more: &str) -> String {
    let pin = key.pinned("it@example.com");
    let public = serde_json::to_value(&pin.public_key).unwrap();
    format!(
        "server = \"{server}\"\nname = \"pc\"\nkey = \"{KEY}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\nrequire_passkey = {require_passkey}\n{more}passkeys = [{{ recipient = \"it@example.com\", id = \"{}\", public_key = {{ alg = \"{}\", key = \"{}\" }} }}]\n",
        pin.id,
        public["alg"].as_str().unwrap(),
        public["key"].as_str().unwrap(),
    )
}

/// An agent that requires passkey approvals from it@example.com, whose key
/// `pinned` is, dialing a fake server.
async fn agent(pinned: impl Fn(&str) -> SoftPasskey) -> (Agent, SoftPasskey) {
    let server = FakeServer::start().await;
    let key = pinned(&server.url);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&server.url, &key, true, "");
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
        allowed(&mut self.control, id, None, assertions).await;
    }

    /// The agent's refusal of request `id`: the reason the server records
    /// and the operator reads.
    async fn refusal(&mut self, id: &str) -> String {
        refusal(&mut self.control, id).await
    }

    /// The session connection the agent opens, and for what.
    async fn session_opened(&self) -> String {
        self.server.accept().await.path
    }
}

/// The agent's refusal of allowed request `id`, as it tells the server.
async fn refusal(control: &mut Connection<TcpStream>, id: &str) -> String {
    let refused = next_from(control, |message| match message {
        AgentToServer::Refused { request_id, reason } if request_id == id => Some(reason),
        _ => None,
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("the agent refuses within 10 s")
}

/// Tells the agent request `id` was allowed (reusing `reused_from`), with
/// these assertions.
async fn allowed(
    control: &mut Connection<TcpStream>,
    id: &str,
    reused_from: Option<&str>,
    assertions: Vec<Assertion>,
) {
    control
        .write_message(&ServerToAgent::Settled {
            request_id: id.into(),
            outcome: Outcome::Allowed {
                by: "it@example.com".into(),
                at: 1,
                reused_from: reused_from.map(str::to_string),
            },
            assertions,
        })
        .await
        .unwrap();
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
        "it needs 1 approval made with a passkey pinned on this computer, and has 0"
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
        "the approval was made for another request (its challenge differs)"
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
        "the assertion is from a key that is not pinned on this computer"
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
        "the approval was made for another request (its challenge differs)"
    );
}

/// Issue 25: a reuse keeps `require_passkey`. An approval made before the
/// computer required passkeys is not offered for reuse once it does, and a
/// server that lets one in anyway is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_made_without_a_passkey_is_not_reused_once_passkeys_are_required() {
    let server = FakeServer::start().await;
    let key = SoftPasskey::new(&server.url);
    let dir = tempfile::tempdir().unwrap();
    let window = "approval_valid_for = 600\n";
    let mut control = server
        .welcome_agent(dir.path(), &settings(&server.url, &key, false, window))
        .await;
    let service = command("true");
    let reply = offer(&mut control, "r1", service.clone()).await;
    assert!(
        matches!(
            reply,
            OfferReply::RequireAuthorization { passkey: None, .. }
        ),
        "{reply:?}"
    );
    allowed(&mut control, "r1", None, Vec::new()).await;
    assert_eq!(server.accept().await.path, "/v1/session/r1");

    // The owner now requires passkeys: that approval is not offered for
    // reuse, so the recipients are asked again, with their passkeys.
    std::fs::write(
        dir.path().join("agent.toml"),
        settings(&server.url, &key, true, window),
    )
    .unwrap();
    let reply = offer(&mut control, "r2", service).await;
    let OfferReply::RequireAuthorization { reuse, passkey, .. } = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(reuse, None);
    assert!(passkey.is_some());
    // A server that lets the old approval in all the same is refused.
    allowed(&mut control, "r2", Some("r1"), Vec::new()).await;
    assert_eq!(
        refusal(&mut control, "r2").await,
        "the reused approval was not made with a passkey verified here, and it requires passkeys"
    );
}
