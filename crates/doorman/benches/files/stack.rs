//! The Doorman side of the benchmark: `doorman server` over TLS with its
//! emails to an SMTP sink, `doorman agent` sharing a folder with email
//! authorization on, one `doorman cp` process per copy, and the recipient
//! who clicks Allow on each copy's emailed link; and the memory figures
//! read off the agent and server.

use crate::{COMPUTER, DOORMAN, RECIPIENT, RUN_DEADLINE};
use doorman_test_support::SmtpSink;
use doorman_test_support::process::{Process, listening_address, start_agent};
use doorman_test_support::world::extract_nonce;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`); 0 once the
/// process is gone.
pub fn status_kib(pid: Option<u32>, field: &str) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts a process's peak resident memory (`VmHWM`) again from its
/// present one, so that the next peak read is the next case's.
pub fn reset_peak(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

async fn doorman(args: &[&str]) -> String {
    doorman_test_support::process::output_of(DOORMAN, args).await
}

/// `doorman server` over TLS with its emails to an SMTP sink, and `doorman
/// agent` sharing one folder, with email authorization on.
pub struct Doorman {
    pub server: Process,
    pub agent: Process,
    url: String,
    token: String,
    ca: PathBuf,
    sink: SmtpSink,
    /// Emails received so far: one per copy asked for.
    seen: usize,
}

pub async fn start_doorman(dir: &Path, shared: &Path) -> Doorman {
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
        COMPUTER,
        "--services",
        "files",
    ])
    .await;
    let key = doorman(&["admin", "--data-dir", data, "agent", "add", COMPUTER]).await;
    let certificates = doorman_test_support::tls::generate(&dir.join("certs"));
    let sink = SmtpSink::start().await;
    let smtp_url = sink.url();
    let server = Process::start(
        DOORMAN,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--tls-cert",
            certificates.cert.to_str().unwrap(),
            "--tls-key",
            certificates.key.to_str().unwrap(),
            "--smtp-url",
            &smtp_url,
            "--mail-from",
            "doorman@example.com",
            // Every run asks anew: more than the default 30 an hour.
            "--max-requests-per-hour",
            "100000",
        ],
    );
    let url = format!("https://{}", listening_address(&server).await);
    let settings = format!(
        "server = \"{url}\"\nname = \"{COMPUTER}\"\nkey = \"{key}\"\nca = {:?}\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"{RECIPIENT}\"]\n\n[services]\nshell = false\nfiles = [{:?}]\n",
        certificates.ca.display().to_string(),
        shared.display().to_string()
    );
    let agent = start_agent(DOORMAN, &dir.join("agent.toml"), &settings).await;
    Doorman {
        server,
        agent,
        url,
        token,
        ca: certificates.ca,
        sink,
        seen: 0,
    }
}

impl Doorman {
    /// Runs `doorman cp ARGS…` while the recipient approves its request:
    /// (spawn to exit, spawn to the Allow taken).
    pub async fn cp(&mut self, args: &[&str]) -> (Duration, Duration) {
        let start = Instant::now();
        let child = tokio::process::Command::new(DOORMAN)
            .arg("cp")
            .arg("--ca")
            .arg(&self.ca)
            .args(args)
            .env("DOORMAN_SERVER", &self.url)
            .env("DOORMAN_TOKEN", &self.token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start doorman cp");
        let run = async move {
            let output = child.wait_with_output().await.expect("wait for doorman cp");
            (output, start.elapsed())
        };
        tokio::pin!(run);
        let approving = approve(&self.sink, self.seen, &self.ca);
        tokio::pin!(approving);
        // A copy may end before the POST's answer is read: its end is kept
        // until the Allow is, and only one that failed stops the wait.
        let mut ended = None;
        let approved = loop {
            tokio::select! {
                approved = &mut approving => break approved.duration_since(start),
                (output, elapsed) = &mut run, if ended.is_none() => {
                    assert!(
                        output.status.success(),
                        "doorman cp {args:?} ended ({}) before its request was approved: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    );
                    ended = Some((output, elapsed));
                }
            }
        };
        self.seen += 1;
        let (output, elapsed) = match ended {
            Some(ended) => ended,
            None => tokio::time::timeout(RUN_DEADLINE, run)
                .await
                .unwrap_or_else(|_| panic!("doorman cp {args:?} took over {RUN_DEADLINE:?}")),
        };
        assert!(
            output.status.success(),
            "doorman cp {args:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        (elapsed, approved)
    }
}

/// The recipient: waits for the email after the first `seen`, opens its
/// link and clicks Allow as a browser does; when the Allow was taken.
async fn approve(sink: &SmtpSink, seen: usize, ca: &Path) -> Instant {
    let mails = sink.wait_for(seen + 1).await;
    let link = mails[seen].link();
    let (address, path) = link
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("not an https:// link: {link}"));
    let address: SocketAddr = address
        .parse()
        .unwrap_or_else(|e| panic!("the link {link} names no address: {e}"));
    let path = format!("/{path}");
    let page = doorman_test_support::tls::https_get(address, Some(ca), &path).await;
    let nonce =
        extract_nonce(&page).unwrap_or_else(|| panic!("no form on the approval page: {page}"));
    // The nonce is URL-safe base64: nothing in it to encode.
    let form = format!("decision=allow&nonce={nonce}");
    let answer = doorman_test_support::tls::https_post_form(address, Some(ca), &path, &form).await;
    assert!(
        answer.starts_with("HTTP/1.1 303"),
        "the Allow click was not taken: {answer}"
    );
    Instant::now()
}
