//! `doorman demo`: a server and an agent in one process on loopback, with
//! email written to the outbox, and the exact commands to try the story.

use crate::cli::DemoArgs;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;

const DEMO_COMPUTER: &str = "demo-pc";
const DEMO_OPERATOR: &str = "demo-operator";

/// Sets the demo up in a temporary directory, says how to try it, and runs
/// the server and the agent until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<()> {
    let listener = bind(args.listen).await?;
    let address: SocketAddr = listener.local_addr()?;
    let url = format!("http://{address}");
    let dir = tempfile::Builder::new().prefix("doorman-demo-").tempdir()?;
    let data_dir = dir.path().join("server");
    doorman_store::private::create_dir(&data_dir)?;
    let (token, key) = register(&data_dir).await?;
    let agent_config = dir.path().join("agent.toml");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared)?;
    write_agent_settings(&agent_config, &url, &key, &shared)?;
    let config = server_config(&url, &data_dir);
    print_instructions(&url, &token, &agent_config, &data_dir, &shared);
    serve_until_stopped(config, listener, agent_config).await
}

/// The address given, or port 8080 on loopback if it is free, else any.
async fn bind(listen: Option<SocketAddr>) -> Result<TcpListener> {
    Ok(match listen {
        Some(address) => TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?,
        None => match TcpListener::bind("127.0.0.1:8080").await {
            Ok(listener) => listener,
            Err(_) => TcpListener::bind("127.0.0.1:0").await?,
        },
    })
}

/// Adds the demo operator and computer to the database in `data_dir`:
/// the operator's token and the computer's key.
async fn register(data_dir: &Path) -> Result<(String, String)> {
    let store = doorman_store::Store::open(&doorman_server::default_database_url(data_dir)).await?;
    // The demo operator may reach the demo computer, as `doorman admin
    // operator add … --computers demo-pc` would grant.
    let grant = doorman_server::admin::NewOperator {
        computers: vec![DEMO_COMPUTER.parse().map_err(anyhow::Error::msg)?],
        services: doorman_core::access::ServiceSet::ALL,
        email: None,
    };
    let token = doorman_server::admin::add_operator_with(&store, DEMO_OPERATOR, &grant).await?;
    let key = doorman_server::admin::add_agent(&store, DEMO_COMPUTER).await?;
    Ok((token, key))
}

/// The demo computer's settings: email authorization on, two recipients,
/// a shell, one shared folder.
fn write_agent_settings(path: &Path, url: &str, key: &str, shared: &Path) -> Result<()> {
    let shared = shared.display();
    let settings = format!(
        r#"# Settings of the demo computer. Change them with `doorman settings`.
server = "{url}"
name = "{DEMO_COMPUTER}"
key = "{key}"

[desktop_sharing]
require_email_authorization = true
email_authorization_timeout = 180
recipients = ["owner@example.com", "it@example.com"]

[services]
shell = true
files = ["{shared}"]
"#
    );
    doorman_agent::settings_file::write_atomically(path, settings.as_bytes())?;
    Ok(())
}

/// The demo server's configuration: no mail relay (emails go to the
/// outbox), no TLS, the defaults otherwise.
fn server_config(url: &str, data_dir: &Path) -> doorman_server::ServerConfig {
    doorman_server::ServerConfig {
        public_url: url.to_string(),
        data_dir: data_dir.to_path_buf(),
        database_url: None,
        smtp_url: None,
        smtp_ca: None,
        mail_from: "Doorman demo <doorman@localhost>".into(),
        tls: None,
        acme: None,
        limits: doorman_server::Limits::default(),
        trusted_proxies: Vec::new(),
        heartbeat: doorman_server::DEFAULT_HEARTBEAT,
        connections: doorman_http::serve::ConnectionLimits::default(),
        audit_retention_days: doorman_server::DEFAULT_AUDIT_RETENTION_DAYS,
        console_idle_minutes: doorman_web::console::DEFAULT_IDLE_MINUTES,
        metrics: doorman_broker::metrics::Metrics::new(),
        metrics_listen: None,
        insecure_public_url: false,
        recordings: doorman_server::Recordings::default(),
        clock: doorman_runtime::clock::Clock::system(),
    }
}

/// The story to try, with the exact commands.
fn print_instructions(url: &str, token: &str, agent_config: &Path, data_dir: &Path, shared: &Path) {
    let exe = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "doorman".into());
    // Each demo's computer has a new identity: its own known-computers
    // file keeps the one of an earlier demo from looking like a change.
    let known = agent_config.with_file_name("known_computers");
    println!(
        "\nDoorman demo: a server and the computer {DEMO_COMPUTER:?} are running on {url}.\n\
         Email authorization is on; the emails go to the outbox instead of being sent.\n\n\
         1. In a second terminal, connect as the operator:\n\n   \
            {exe} connect {DEMO_COMPUTER} --server {url} --token {token} --known-computers {known} --reason \"demo\" -- sh -c 'echo hello from $(hostname); exit 7'\n\n\
         2. Open the outbox in a browser, click Check Request, then Allow Session:\n\n   \
            {url}/outbox\n\n\
         3. The command runs at once and `connect` exits with its status (7).\n   \
            Deny instead, or let the {timeout} s pass, or press Ctrl-C in the second terminal.\n\n\
         Or from a browser: {url}/console, sign in with the token above, and open\n   \
            the Terminal of {DEMO_COMPUTER:?}; allow it from the outbox the same way.\n\n\
         Copy a file to its shared folder, approved the same way:\n   \
            {exe} cp --server {url} --token {token} --known-computers {known} README.md {DEMO_COMPUTER}:{shared}/\n\n\
         Settings: {exe} settings --config {config} set --email-timeout 60\n\
         Audit:    {exe} admin --data-dir {data} audit\n\n\
         Press Ctrl-C here to stop the demo.\n",
        timeout = 180,
        config = agent_config.display(),
        data = data_dir.display(),
        shared = shared.display(),
        known = known.display(),
    );
}

/// Runs the server and the agent until Ctrl-C stops both.
async fn serve_until_stopped(
    config: doorman_server::ServerConfig,
    listener: TcpListener,
    agent_config: PathBuf,
) -> Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut server_stop = stopped.clone();
    let server = doorman_server::run(config, listener, async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    });
    let mut agent_stop = stopped;
    let agent = doorman_agent::run(agent_config, async move {
        let _ = agent_stop.wait_for(|stop| *stop).await;
    });
    let signal = async {
        crate::shutdown_signal().await;
        let _ = stop.send(true);
    };
    let (server, agent, ()) = tokio::join!(server, agent, signal);
    server?;
    agent?;
    Ok(())
}
