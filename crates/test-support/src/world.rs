//! A whole Doorman on loopback in one test process: an SMTP sink, a server
//! with its own data directory, a registered operator, and an agent running
//! from a real settings file; plus an operator that connects through the real
//! client library and a recipient that clicks through a real HTTP client.

mod builder;

pub use crate::connecting::{Connecting, SharedBuf, request_id};
pub use crate::smtp::SmtpTls;
use crate::smtp::{SinkTls, SmtpSink};
pub use builder::WorldBuilder;
use doorman_broker::broker::Broker;
use doorman_client::ConnectRequest;
use doorman_core::Secret;
use doorman_server::ServerConfig;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const COMPUTER: &str = "office-pc";
pub const OPERATOR: &str = "alice";

/// A running world; dropping it stops everything.
pub struct World {
    pub dir: tempfile::TempDir,
    pub smtp: SmtpSink,
    pub url: String,
    pub config: ServerConfig,
    pub address: std::net::SocketAddr,
    pub broker: Arc<Broker>,
    pub operator_token: String,
    pub agent_key: String,
    pub agent_config: PathBuf,
    /// The CA the operator trusts, for a TLS world.
    pub ca: Option<PathBuf>,
    server_stop: Option<oneshot::Sender<()>>,
    server_task: Option<JoinHandle<Result<(), doorman_server::ServerError>>>,
    agent_stop: Option<oneshot::Sender<()>>,
    agent_task: Option<JoinHandle<Result<(), doorman_agent::AgentError>>>,
    pub http: reqwest::Client,
}

impl World {
    /// Starts the world `builder` describes and returns once its agent is
    /// online.
    async fn from_builder(builder: WorldBuilder) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let (smtp, smtp_ca) = match builder.smtp_tls {
            None => (SmtpSink::start().await, None),
            Some(mode) => {
                let certs = crate::tls::generate(&dir.path().join("smtp-certs"));
                let security = SinkTls::new(mode, &certs);
                (SmtpSink::start_with(security).await, Some(certs.ca))
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let certificates = builder.tls.then(|| crate::tls::generate(dir.path()));
        let scheme = if builder.tls { "https" } else { "http" };
        // WebAuthn takes a domain as the relying party, never an address.
        let url = if builder.localhost {
            format!("{scheme}://localhost:{}", address.port())
        } else {
            format!("{scheme}://{address}")
        };
        let config = ServerConfig {
            public_url: url.clone(),
            data_dir: dir.path().join("server"),
            database_url: builder.database_url.clone(),
            smtp_url: Some(smtp.url()),
            smtp_ca,
            mail_from: "Doorman <doorman@example.com>".into(),
            limits: builder.limits,
            acme: None,
            // The CA is presented after the chain, as with `tls init`'s.
            tls: certificates.as_ref().map(|c| doorman_server::TlsFiles {
                cert: c.cert.clone(),
                key: c.key.clone(),
                ca: Some(c.ca.clone()),
            }),
            trusted_proxies: builder
                .trusted_proxies
                .iter()
                .map(|p| p.parse().expect("a trusted proxy"))
                .collect(),
            heartbeat: builder.heartbeat,
            connections: builder.connections,
            audit_retention_days: doorman_server::DEFAULT_AUDIT_RETENTION_DAYS,
            console_idle_minutes: doorman_web::console::DEFAULT_IDLE_MINUTES,
            metrics: doorman_broker::metrics::Metrics::new(),
            metrics_listen: None,
            insecure_public_url: false,
            recordings: builder.recordings,
            clock: doorman_runtime::clock::Clock::system(),
        };
        let server = doorman_server::Server::bind(config.clone(), listener)
            .await
            .expect("server starts");
        let broker = server.broker();
        let operator_token = doorman_server::admin::add_operator(broker.store(), OPERATOR)
            .await
            .expect("operator added");
        let agent_key = doorman_server::admin::add_agent(broker.store(), COMPUTER)
            .await
            .expect("agent added");
        let (server_stop, server_task) = stoppable(|stopped| server.run(stopped));
        let agent_config = dir.path().join("agent.toml");
        std::fs::write(&agent_config, builder.settings_text(&url, &agent_key))
            .expect("write settings");
        let (agent_stop, agent_task) =
            stoppable(|stopped| doorman_agent::run(agent_config.clone(), stopped));
        wait_for_agent(&broker, COMPUTER, true).await;
        World {
            dir,
            smtp,
            url,
            config,
            address,
            broker,
            operator_token,
            agent_key,
            agent_config,
            ca: certificates.map(|c| c.ca),
            server_stop: Some(server_stop),
            server_task: Some(server_task),
            agent_stop: Some(agent_stop),
            agent_task: Some(agent_task),
            // A page or a click that never answers fails the test, named.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    pub async fn start() -> World {
        WorldBuilder::default().start().await
    }

    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    /// Starts `doorman connect COMPUTER --json -- command…` as the operator.
    pub fn connect(&self, command: &[&str], reason: &str) -> Connecting {
        self.connect_to(COMPUTER, &self.operator_token, command, reason)
    }

    pub fn connect_to(
        &self,
        computer: &str,
        token: &str,
        command: &[&str],
        reason: &str,
    ) -> Connecting {
        let session =
            doorman_client::SessionKind::Command(command.iter().map(|s| s.to_string()).collect());
        self.connect_with(
            computer,
            token,
            session,
            reason,
            Box::new(tokio::io::empty()),
        )
    }

    /// Connects to the world's computer as its operator for `session`, with
    /// no input.
    pub fn connect_for(&self, session: doorman_client::SessionKind, reason: &str) -> Connecting {
        self.connect_with(
            COMPUTER,
            &self.operator_token,
            session,
            reason,
            Box::new(tokio::io::empty()),
        )
    }

    /// Connects for any kind of session, with `stdin` as the operator's input.
    pub fn connect_with(
        &self,
        computer: &str,
        token: &str,
        session: doorman_client::SessionKind,
        reason: &str,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Connecting {
        self.connect_via(&self.url, (computer, token), session, reason, stdin, true)
    }

    /// [`World::connect_shell`] without sealing the session end to end:
    /// the operator stands where the web console does, and the server
    /// records the session itself.
    pub fn connect_shell_unsealed(
        &self,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Connecting {
        let shell = doorman_client::SessionKind::Shell {
            term: "xterm-256color".into(),
            rows: 24,
            cols: 80,
        };
        let who = (COMPUTER, self.operator_token.as_str());
        self.connect_via(&self.url, who, shell, "", stdin, false)
    }

    /// [`World::connect_for`] without sealing the session end to end.
    pub fn connect_for_unsealed(&self, session: doorman_client::SessionKind) -> Connecting {
        let who = (COMPUTER, self.operator_token.as_str());
        let stdin = Box::new(tokio::io::empty());
        self.connect_via(&self.url, who, session, "", stdin, false)
    }

    /// Opens an interactive shell (xterm-256color, 24×80) on the world's
    /// computer as its operator, typing what `stdin` gives.
    pub fn connect_shell(&self, stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>) -> Connecting {
        let shell = doorman_client::SessionKind::Shell {
            term: "xterm-256color".into(),
            rows: 24,
            cols: 80,
        };
        self.connect_with(COMPUTER, &self.operator_token, shell, "", stdin)
    }

    /// Runs `command` on the world's computer as its operator, dialing
    /// `server` (e.g. a front to the world's server) instead of the server.
    pub fn connect_through(&self, server: &str, command: &[&str]) -> Connecting {
        self.connect_via(
            server,
            (COMPUTER, &self.operator_token),
            doorman_client::SessionKind::Command(command.iter().map(|s| s.to_string()).collect()),
            "",
            Box::new(tokio::io::empty()),
            true,
        )
    }

    /// [`World::connect_with`] through `server` (e.g. a proxy in front of
    /// the world's server).
    fn connect_via(
        &self,
        server: &str,
        (computer, token): (&str, &str),
        session: doorman_client::SessionKind,
        reason: &str,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        end_to_end: bool,
    ) -> Connecting {
        let request = ConnectRequest {
            server: server.to_string(),
            ca: self.ca.clone(),
            token: Secret::new(token),
            computer: computer.to_string(),
            reason: reason.to_string(),
            session,
            expiry_grace: doorman_client::EXPIRY_GRACE,
            known_computers: doorman_client::known::KnownComputers::at(
                self.dir.path().join("known_computers"),
            ),
            end_to_end,
        };
        Connecting::start(request, stdin)
    }

    /// Opens the approval page like a browser does and clicks a button.
    pub async fn click(&self, link: &str, decision: &str) -> reqwest::Response {
        let page = self
            .http
            .get(link)
            .send()
            .await
            .expect("GET page")
            .text()
            .await
            .expect("page");
        let nonce = extract_nonce(&page).expect("the page has a form with a nonce");
        self.http
            .post(link)
            .form(&[("decision", decision), ("nonce", nonce.as_str())])
            .send()
            .await
            .expect("POST decision")
    }

    /// The link the email to recipient number `position` of a request
    /// carries, derived as the server derives it: for tests in which that
    /// email may never be sent (the request ended first).
    pub fn link_of(&self, request_id: &str, position: i64) -> String {
        let token = self.broker.key().link_token(request_id, position);
        format!("{}/a/{token}", self.url)
    }

    /// The approval page's HTML.
    pub async fn page(&self, link: &str) -> (reqwest::StatusCode, String) {
        let response = self.http.get(link).send().await.expect("GET page");
        let status = response.status();
        (status, response.text().await.expect("page text"))
    }

    /// The request's state as stored.
    pub async fn state_of(&self, request_id: &str) -> doorman_core::RequestState {
        self.broker
            .store()
            .request(request_id)
            .await
            .expect("store")
            .expect("request exists")
            .state
    }

    /// The server's clock, which the test moves forward instead of
    /// sleeping (`world.clock().advance(…)`): expiry, reuse windows, blocks,
    /// retries and time limits follow it. A restarted server keeps it.
    pub fn clock(&self) -> &doorman_runtime::clock::Clock {
        &self.config.clock
    }

    /// Moves the server's clock one heartbeat on, instead of waiting for
    /// it: every heartbeat the server made before (its agents' pings, the
    /// watch on agent keys, each wait's and session's checks) ticks once.
    /// Requests' deadlines move by as much.
    pub fn pass_a_heartbeat(&self) {
        self.clock().advance(self.config.heartbeat);
    }

    /// The server's database faults: its writes fail or stall while the
    /// test says so (the server after a restart has its own, off).
    pub fn faults(&self) -> &doorman_store::Faults {
        self.broker.store().faults()
    }

    /// Waits (20 s at most, then fails naming it) until `name` is online
    /// or offline.
    pub async fn wait_for_agent(&self, name: &str, online: bool) {
        wait_for_agent(&self.broker, name, online).await;
    }

    /// How many emails the server ever queued (the outbox, not the sink):
    /// "no email" checked right after a connect ends cannot miss one still
    /// on its way.
    pub async fn emails_queued(&self) -> i64 {
        self.broker.store().emails_queued().await.expect("outbox")
    }

    pub async fn audit_events(&self) -> Vec<doorman_store::AuditEvent> {
        self.broker.store().audit_events().await.expect("audit")
    }

    /// The kinds of the audit trail's events, oldest first.
    pub async fn audit_kinds(&self) -> Vec<doorman_core::AuditKind> {
        self.audit_events()
            .await
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    /// Signs in to the web console with `token`; the session cookie
    /// (`name=value`), to send back in a `Cookie` header.
    pub async fn console_cookie(&self, token: &str) -> String {
        let signed = self
            .http
            .post(format!("{}/console/sign-in", self.url))
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST sign-in");
        assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER, "signed in");
        let set = signed
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .expect("a cookie is set")
            .to_str()
            .expect("a text cookie");
        set.split(';').next().unwrap_or_default().to_string()
    }

    /// Waits for the first audit event of this kind. The audit trail is a
    /// table written by the server's tasks, with nothing to await, so it is
    /// read every 20 ms.
    pub async fn wait_for_audit(&self, event: &str) -> doorman_store::AuditEvent {
        self.wait_for_audits(event, 1).await.remove(0)
    }

    /// Waits for `count` audit events of this kind (read as
    /// [`World::wait_for_audit`] reads them); the first `count`.
    pub async fn wait_for_audits(
        &self,
        event: &str,
        count: usize,
    ) -> Vec<doorman_store::AuditEvent> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not {count} {event:?} audit events within 20 s; the trail: {:?}",
                self.audit_events()
                    .await
                    .iter()
                    .map(|e| e.event.as_str())
                    .collect::<Vec<_>>()
            );
            let found: Vec<_> = self
                .audit_events()
                .await
                .into_iter()
                .filter(|e| e.event.as_str() == event)
                .take(count)
                .collect();
            if found.len() == count {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (for real: its `run` returns) and starts a new one on
    /// the same address and data directory.
    pub async fn restart_server(&mut self) {
        self.stop_server().await;
        self.start_server().await;
    }

    /// Starts the server again on the same address and data directory.
    pub async fn start_server(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .expect("rebind");
        let server = doorman_server::Server::bind(self.config.clone(), listener)
            .await
            .expect("server restarts");
        self.broker = server.broker();
        let (server_stop, server_task) = stoppable(|stopped| server.run(stopped));
        self.server_stop = Some(server_stop);
        self.server_task = Some(server_task);
    }

    pub async fn stop_server(&mut self) {
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.server_task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Registers and starts one more agent, set up like the first, and
    /// waits until it is online. It runs until the test ends.
    pub async fn add_agent(&self, name: &str, builder: &WorldBuilder) {
        self.add_agent_via(name, builder, &self.url).await;
    }

    /// [`World::add_agent`], with the agent dialing `server` (e.g. a front
    /// to the world's server).
    pub async fn add_agent_via(&self, name: &str, builder: &WorldBuilder, server: &str) {
        let key = doorman_server::admin::add_agent(self.broker.store(), name)
            .await
            .expect("agent added");
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, builder.settings_text_for(name, server, &key)).expect("settings");
        tokio::spawn(doorman_agent::run(config, std::future::pending::<()>()));
        self.wait_for_agent(name, true).await;
    }

    pub async fn stop_agent(&mut self) {
        if let Some(stop) = self.agent_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.agent_task.take() {
            task.await
                .expect("agent task")
                .expect("agent stops cleanly");
        }
        self.wait_for_agent(COMPUTER, false).await;
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(task) = &self.agent_task {
            task.abort();
        }
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Spawns what `start` returns, given a future that completes when the
/// returned sender sends (or is dropped): a server's or agent's stop.
fn stoppable<F>(
    start: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
) -> (oneshot::Sender<()>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(start(Box::pin(async move {
        let _ = stopped.await;
    })));
    (stop, task)
}

/// Waits for the agent to go online (and say what it offers) or offline.
async fn wait_for_agent(broker: &Broker, name: &str, online: bool) {
    let state = if online { "online" } else { "offline" };
    let changed = async {
        broker.agents().wait_for(name, online).await;
        if online {
            broker.agents().wait_for_status(name, |_| true).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), changed)
        .await
        .unwrap_or_else(|_| panic!("agent {name} did not go {state} within 20 s"));
}

/// The nonce of the approval page's form.
pub fn extract_nonce(page: &str) -> Option<String> {
    let start = page.find("name=\"nonce\" value=\"")? + "name=\"nonce\" value=\"".len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_string())
}
