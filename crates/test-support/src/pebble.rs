//! Pebble, the ACME test CA (Debian's `pebble`), started for one test on
//! ports of its own choosing, with an HTTPS certificate from a test CA the
//! server under test is told to trust (`--acme-ca`).

use crate::process::Process;
use crate::tls::TestCertificates;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running Pebble.
pub struct Pebble {
    _process: Process,
    _dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA of Pebble's own HTTPS: `--acme-ca`.
    pub https_ca: PathBuf,
    certificates: TestCertificates,
    management: u16,
}

impl Pebble {
    /// Starts Pebble with validation skipped (`PEBBLE_VA_ALWAYS_VALID`),
    /// refusing any domain in `blocked`; `None` (after saying so) when
    /// Pebble is not installed.
    pub async fn start(blocked: &[&str]) -> Option<Pebble> {
        let Some(program) = crate::which("pebble") else {
            crate::skip_without("pebble", "apt-get install pebble");
            return None;
        };
        let dir = tempfile::tempdir().expect("pebble dir");
        let certificates = crate::tls::generate(&dir.path().join("certs"));
        let config = serde_json::json!({"pebble": {
            "listenAddress": "127.0.0.1:0",
            "managementListenAddress": "127.0.0.1:0",
            "certificate": certificates.cert,
            "privateKey": certificates.key,
            "httpPort": 5002,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "domainBlocklist": blocked,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("pebble config");
        let process = Process::start_with_env(
            program.to_str().expect("utf-8 path"),
            &["-config", config_path.to_str().expect("utf-8 path")],
            &[
                ("PEBBLE_VA_ALWAYS_VALID", "1"),
                ("PEBBLE_VA_NOSLEEP", "1"),
                ("PEBBLE_WFE_NONCEREJECT", "0"),
                ("PEBBLE_AUTHZREUSE", "0"),
            ],
        );
        process
            .stdout
            .wait_until(|t| t.contains("ACME directory available"))
            .await;
        let pid = process.pid().expect("pebble runs");
        let mut ports = Vec::new();
        // Pebble names port 0 in its log; the kernel knows what it chose.
        for _ in 0..200 {
            ports = crate::process::listening_ports(pid);
            if ports.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(ports.len(), 2, "pebble listens on two ports: {ports:?}");
        let mut pebble = Pebble {
            _process: process,
            _dir: dir,
            directory: String::new(),
            https_ca: certificates.ca.clone(),
            certificates,
            management: 0,
        };
        for port in ports {
            if pebble.get(port, "/dir").await.contains("newAccount") {
                pebble.directory = format!("https://127.0.0.1:{port}/dir");
            } else {
                pebble.management = port;
            }
        }
        assert!(!pebble.directory.is_empty(), "pebble's directory found");
        Some(pebble)
    }

    /// The root of the chains Pebble issues (PEM), from its management
    /// interface.
    pub async fn issuing_root(&self) -> String {
        self.get(self.management, "/roots/0").await
    }

    /// The body of `GET https://127.0.0.1:PORT/PATH`.
    async fn get(&self, port: u16, path: &str) -> String {
        let config =
            doorman_wire::tls::client_config(Some(&self.certificates.ca)).expect("client config");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("reach pebble");
        let name = rustls_name("127.0.0.1");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("TLS with pebble");
        tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response).to_string();
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, body)| body.to_string())
    }
}

fn rustls_name(host: &str) -> tokio_rustls::rustls::pki_types::ServerName<'static> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string()).expect("a name")
}
