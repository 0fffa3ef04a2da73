//! An SMTP server for tests: accepts every message on loopback and lets tests
//! await and read what arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One message as received.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

impl ReceivedMail {
    fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parseable email")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_string()
    }

    pub fn text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|text| text.to_string())
            .unwrap_or_default()
    }

    pub fn html(&self) -> String {
        self.parsed()
            .body_html(0)
            .map(|html| html.to_string())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let raw = String::from_utf8_lossy(&self.data).to_string();
        let head = raw.split("\r\n\r\n").next().unwrap_or_default().to_string();
        head.lines()
            .find(|line| {
                line.split_once(':')
                    .is_some_and(|(key, _)| key.eq_ignore_ascii_case(name))
            })
            .map(|line| {
                line.split_once(':')
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default()
            })
    }

    /// The Check Request link of the plain-text body.
    pub fn link(&self) -> String {
        let text = self.text();
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix("Check Request: "))
            .expect("a Check Request line");
        line.trim().to_string()
    }
}

/// Replies the sink gives instead of accepting, so tests can make delivery
/// fail: per recipient (at RCPT TO, one scripted reply per attempt, then
/// 250), and for whole connections (at the greeting).
#[derive(Debug, Default)]
struct Script {
    rcpt: std::collections::HashMap<String, std::collections::VecDeque<String>>,
    greetings: std::collections::VecDeque<String>,
}

/// The sink: address to give the server, and the mail it got.
#[derive(Clone, Debug)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    count: watch::Receiver<usize>,
    script: Arc<Mutex<Script>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp sink");
        let port = listener.local_addr().expect("local addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (counter, count) = watch::channel(0usize);
        let counter = Arc::new(counter);
        let store = received.clone();
        let script = Arc::new(Mutex::new(Script::default()));
        let scripted = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                let counter = counter.clone();
                let script = scripted.clone();
                tokio::spawn(async move {
                    let _ = session(stream, store, counter, script).await;
                });
            }
        });
        Self {
            port,
            received,
            count,
            script,
        }
    }

    /// Answers RCPT TO for `address` with these replies (e.g. `"451 4.3.0
    /// try later"`, `"550 5.1.1 no such user"`), one per attempt, then 250.
    pub fn reject_recipient(&self, address: &str, replies: &[&str]) {
        self.script.lock().expect("script lock").rcpt.insert(
            address.to_string(),
            replies.iter().map(|r| r.to_string()).collect(),
        );
    }

    /// Greets the next connections with these replies (e.g. `"421 busy"`)
    /// and closes them.
    pub fn refuse_connections(&self, replies: &[&str]) {
        self.script
            .lock()
            .expect("script lock")
            .greetings
            .extend(replies.iter().map(|r| r.to_string()));
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Everything received so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.received.lock().expect("sink lock").clone()
    }

    /// Waits until at least `n` messages have arrived (10 s at most).
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedMail> {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("expected {n} emails, got {}", self.mails().len()))
            .expect("sink alive");
        self.mails()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<ReceivedMail>>>,
    counter: Arc<watch::Sender<usize>>,
    script: Arc<Mutex<Script>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let refusal = script.lock().expect("script lock").greetings.pop_front();
    if let Some(reply) = refusal {
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
        return Ok(());
    }
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            write.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().trim_matches(['<', '>']).to_string();
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let address = command[8..].trim().trim_matches(['<', '>']).to_string();
            let scripted = script
                .lock()
                .expect("script lock")
                .rcpt
                .get_mut(&address)
                .and_then(|replies| replies.pop_front());
            match scripted {
                Some(reply) => write.write_all(format!("{reply}\r\n").as_bytes()).await?,
                None => {
                    to.push(address);
                    write.write_all(b"250 OK\r\n").await?;
                }
            }
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let content = line.strip_prefix('.').unwrap_or(&line);
                data.extend_from_slice(content.as_bytes());
            }
            store.lock().expect("sink lock").push(ReceivedMail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            counter.send_modify(|c| *c += 1);
            write.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 OK\r\n").await?;
        } else {
            write.write_all(b"502 not implemented\r\n").await?;
        }
    }
}
