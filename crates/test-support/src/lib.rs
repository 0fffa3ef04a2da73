//! Shared test helpers: an SMTP sink that speaks real SMTP on loopback, a
//! [`World`] of server, agent and operator wired together in one process,
//! and a raw operator that speaks the wire protocol without the client's
//! own checks.
//!
//! The map:
//!
//! - [`world`]: a whole Doorman on loopback in one test process: SMTP
//!   sink, server, operator, agent, and a recipient that clicks;
//! - [`connecting`]: an operator's `connect` running in a test, its
//!   progress, output and result;
//! - [`smtp`]: the SMTP sink, with the faults tests script;
//! - [`raw`]: a raw operator and a raw agent, which send whatever the test
//!   writes;
//! - [`fake_server`]: a fake server that speaks the agent's side of the
//!   protocol, to pin what the agent enforces by itself;
//! - [`front`]: fronts for servers: a TCP front for replicas, a reverse
//!   proxy, and connections made to go dead without closing;
//! - [`mitm`]: a man in the middle of end-to-end sessions, as a server
//!   that wants to read them would be;
//! - [`process`]: real `doorman` processes, their output captured;
//! - [`tls`]: certificates made at test time, and TLS and HTTPS on
//!   loopback with them;
//! - [`streams`]: one exchange through a relay of byte streams;
//! - [`figures`]: a benchmark's latency sample, summarised;
//! - [`mailroom`]: the sink's emails sorted by request, for benchmarks;
//! - [`postgres`]: a throwaway PostgreSQL server;
//! - [`pebble`]: Pebble, the ACME test CA;
//! - [`sshd`]: a throwaway OpenSSH server, for the benchmarks beside ssh;
//! - [`vnc`]: a real VNC server (TigerVNC);
//! - [`webdriver`]: headless Chromium over W3C WebDriver;
//! - [`wine`]: the cross-built Windows agent under Wine.
#![forbid(unsafe_code)]

pub mod connecting;
pub mod display;
pub mod fake_server;
pub mod figures;
pub mod front;
pub mod mailroom;
pub mod mitm;
pub mod pebble;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod smtp;
pub mod sshd;
pub mod streams;
pub mod tls;
pub mod vnc;
pub mod webdriver;
pub mod wine;
pub mod world;

pub use smtp::{ReceivedMail, SmtpSink};
pub use world::{World, WorldBuilder};

/// Skips a test whose outside program is missing. The note goes straight to
/// standard error, past the test harness's capture, so that `cargo test`
/// shows it; under CI, which installs everything, a missing program fails
/// the test instead.
pub fn skip_without(program: &str, install: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {program} ({install})"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {program} is not installed ({install}); the test passes without running"
    );
}

/// An age key made for a test: its identity file written to `path` as
/// `age-keygen` writes one; returns its recipient (`age1…`).
pub fn age_key(path: &std::path::Path) -> String {
    use age::secrecy::ExposeSecret;
    // Classic X25519, as the age tools of Debian make and open (see the
    // agent's recording).
    #[allow(deprecated)]
    let key = age::x25519::Identity::generate();
    let recipient = key.to_public().to_string();
    let text = format!(
        "# public key: {recipient}\n{}\n",
        key.to_string().expose_secret()
    );
    std::fs::write(path, text).expect("write the age key");
    recipient
}

/// The program's path if it is on `PATH`.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
