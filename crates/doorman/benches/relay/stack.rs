//! The Doorman side of the benchmark: `doorman server` (plain or TLS),
//! `doorman agent` forwarding to the bulk and echo targets, and `doorman
//! connect -L` for both, as real processes: its sessions are sealed end to
//! end. Beside it, the same forwards by an operator that does not seal its
//! session (as the web console does not), run in this process by the
//! client library: the relay without end-to-end records (the engine's own
//! speed, plain) and the agent taking the operator's TLS session over
//! (TLS), which is what `connect` did before sessions were sealed.

use crate::DOORMAN;
use doorman_test_support::connecting::Connecting;
use doorman_test_support::process::{Process, listening_address};
use std::net::SocketAddr;
use std::path::Path;

async fn doorman(args: &[&str]) -> String {
    doorman_test_support::process::output_of(DOORMAN, args).await
}

/// A doorman server, agent and `connect -L` for both targets.
pub struct Doorman {
    pub server: Process,
    pub agent: Process,
    pub connect: Process,
    pub sink: SocketAddr,
    pub echo: SocketAddr,
    /// The unsealed operator's forwards of the same targets.
    pub unsealed: Unsealed,
    /// The server's URL, and its CA's file for TLS.
    url: String,
    ca: Option<String>,
}

impl Doorman {
    /// The TLS server's `doorman_tunnels_total` lines.
    pub async fn tunnels(&self) -> String {
        let Some(ca) = &self.ca else {
            return "not a TLS server".into();
        };
        let address = self.url.trim_start_matches("https://").parse().unwrap();
        doorman_test_support::tls::https_get(address, Some(Path::new(ca)), "/metrics")
            .await
            .lines()
            .filter(|l| l.starts_with("doorman_tunnels_total{"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn start_doorman(dir: &Path, tls: bool, sink: SocketAddr, echo: SocketAddr) -> Doorman {
    std::fs::create_dir_all(dir).unwrap();
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let token = doorman(&[
        "admin",
        "--create",
        "--data-dir",
        data,
        "operator",
        "add",
        "bench",
        "--computers",
        "bench-pc",
    ])
    .await;
    let key = doorman(&["admin", "--data-dir", data, "agent", "add", "bench-pc"]).await;
    let certificates = tls.then(|| doorman_test_support::tls::generate(dir));
    let mut args = vec![
        "server".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data.into(),
    ];
    if let Some(c) = &certificates {
        args.extend([
            "--tls-cert".into(),
            c.cert.display().to_string(),
            "--tls-key".into(),
            c.key.display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Process::start(DOORMAN, &args);
    let address = listening_address(&server).await;
    let url = format!("{}://{address}", if tls { "https" } else { "http" });
    let ca_line = certificates
        .as_ref()
        .map(|c| format!("ca = {:?}\n", c.ca.display().to_string()))
        .unwrap_or_default();
    let config = dir.join("agent.toml");
    let settings = format!(
        "server = \"{url}\"\nname = \"bench-pc\"\nkey = \"{key}\"\n{ca_line}\n[desktop_sharing]\nrequire_email_authorization = false\n\n[services]\nshell = false\nforward = [\"{sink}\", \"{echo}\"]\n"
    );
    let agent = doorman_test_support::process::start_agent(DOORMAN, &config, &settings).await;
    let sink_spec = format!("0:{sink}");
    let echo_spec = format!("0:{echo}");
    let mut connect_args = vec![
        "connect", "bench-pc", "--server", &url, "--token", &token, "--json", "-L", &sink_spec,
        "-L", &echo_spec,
    ];
    let ca_path = certificates.as_ref().map(|c| c.ca.display().to_string());
    if let Some(ca) = &ca_path {
        connect_args.extend(["--ca", ca.as_str()]);
    }
    let connect = Process::start(DOORMAN, &connect_args);
    let text = connect
        .stderr
        .wait_until(|t| t.contains("\"forwarding\"") && t.ends_with('\n'))
        .await;
    let line = text.lines().find(|l| l.contains("\"forwarding\"")).unwrap();
    let (sink_local, echo_local) = listening(&serde_json::from_str(line).unwrap());
    let unsealed = Unsealed::start(dir, &url, ca_path.as_deref(), &token, (sink, echo)).await;
    Doorman {
        server,
        agent,
        sink: sink_local,
        echo: echo_local,
        connect,
        unsealed,
        url,
        ca: ca_path,
    }
}

/// The local ends of a `forwarding` event's two forwards.
fn listening(event: &serde_json::Value) -> (SocketAddr, SocketAddr) {
    let local = |i: usize| -> SocketAddr {
        event["listen"][i]
            .as_str()
            .unwrap()
            .split(" -> ")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (local(0), local(1))
}

/// An operator's forwards that are not sealed end to end, run in this
/// process by the client library.
pub struct Unsealed {
    _connecting: Connecting,
    pub sink: SocketAddr,
    pub echo: SocketAddr,
}

impl Unsealed {
    async fn start(
        dir: &Path,
        url: &str,
        ca: Option<&str>,
        token: &str,
        (sink, echo): (SocketAddr, SocketAddr),
    ) -> Unsealed {
        let spec = |target: SocketAddr| format!("0:{target}").parse().unwrap();
        let request = doorman_client::ConnectRequest {
            server: url.to_string(),
            ca: ca.map(Into::into),
            token: doorman_core::Secret::new(token),
            computer: "bench-pc".into(),
            reason: String::new(),
            session: doorman_client::SessionKind::Forward(vec![spec(sink), spec(echo)]),
            expiry_grace: doorman_client::EXPIRY_GRACE,
            known_computers: doorman_client::known::KnownComputers::at(dir.join("known")),
            end_to_end: false,
        };
        let connecting = Connecting::start(request, Box::new(tokio::io::empty()));
        let event = connecting.event("forwarding").await;
        let (sink, echo) = listening(&event);
        Unsealed {
            _connecting: connecting,
            sink,
            echo,
        }
    }
}
