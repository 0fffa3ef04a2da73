//! An SMTP server for tests: accepts every message on loopback and lets tests
//! await and read what arrived. It speaks plain SMTP, or TLS from the first
//! byte (`smtps://`), or STARTTLS and then refuses mail until the client
//! has upgraded (`?tls=required`). Tests script its faults: refusals per
//! recipient or per connection, hang-ups, and a recipient whose server
//! holds every email until the test releases it.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How a TLS-speaking sink wants TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://…?tls=required`: STARTTLS, and no mail before it.
    StartTls,
}

/// How the sink's connections are secured.
#[derive(Clone)]
pub enum SinkTls {
    Plain,
    /// TLS from the first byte, as `smtps://` expects.
    Implicit(TlsAcceptor),
    /// STARTTLS offered, and required before MAIL FROM.
    StartTls(TlsAcceptor),
}

impl SinkTls {
    /// `mode`, with the server certificate of `certs` (for `localhost`).
    pub fn new(mode: SmtpTls, certs: &crate::tls::TestCertificates) -> SinkTls {
        let config = doorman_certificates::server_config(&certs.cert, &certs.key)
            .expect("the sink's certificate");
        let acceptor = TlsAcceptor::from(config);
        match mode {
            SmtpTls::Implicit => SinkTls::Implicit(acceptor),
            SmtpTls::StartTls => SinkTls::StartTls(acceptor),
        }
    }
}

/// One message as received.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    /// Whether the message came over TLS.
    pub encrypted: bool,
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
    /// The passkey enrolment link of an enrolment email.
    pub fn enrolment_link(&self) -> String {
        self.line_after("Enrol: ")
    }

    pub fn link(&self) -> String {
        self.line_after("Check Request: ")
    }

    /// The rest of the text's first line that starts with `label`.
    fn line_after(&self, label: &str) -> String {
        let text = self.text();
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .unwrap_or_else(|| panic!("a {label:?} line"));
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
    /// Close each connection after the message it carried, as a relay that
    /// drops idle clients does.
    hang_up_after_message: bool,
    /// Recipients whose RCPT TO goes unanswered until released.
    stalls: std::collections::HashMap<String, Arc<Stall>>,
}

/// A recipient's slow mail server: each RCPT TO for it is held, unanswered,
/// until the test releases them all.
#[derive(Debug)]
struct Stall {
    /// How many RCPT TOs for the address have been held so far.
    held: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

/// The test's handle on a recipient whose emails the sink holds.
#[derive(Clone, Debug)]
pub struct StalledRecipient {
    address: String,
    stall: Arc<Stall>,
}

impl StalledRecipient {
    /// Waits (10 s at most) until `n` emails to the address have reached
    /// the sink and are being held.
    pub async fn wait_for_held(&self, n: usize) {
        let mut held = self.stall.held.subscribe();
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            let _ = held.wait_for(|count| *count >= n).await;
        })
        .await;
        if reached.is_err() {
            panic!(
                "expected {n} emails to {} held, got {}",
                self.address,
                *self.stall.held.borrow()
            );
        }
    }

    /// Answers the held RCPT TOs (250), and every later one at once.
    pub fn release(&self) {
        self.stall.released.send_replace(true);
    }
}

/// The sink: address to give the server, and the mail it got.
#[derive(Clone, Debug)]
pub struct SmtpSink {
    pub port: u16,
    scheme: &'static str,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    count: watch::Receiver<usize>,
    script: Arc<Mutex<Script>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_with(SinkTls::Plain).await
    }

    pub async fn start_with(security: SinkTls) -> Self {
        let scheme = match security {
            SinkTls::Plain => "smtp://127.0.0.1:{}",
            SinkTls::Implicit(_) => "smtps://localhost:{}",
            SinkTls::StartTls(_) => "smtp://localhost:{}?tls=required",
        };
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
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepting = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let store = store.clone();
                let counter = counter.clone();
                let script = scripted.clone();
                let security = security.clone();
                tokio::spawn(async move {
                    let sink = Connection {
                        store,
                        counter,
                        script,
                    };
                    let _ = sink.serve(stream, security).await;
                });
            }
        });
        Self {
            port,
            scheme,
            received,
            count,
            script,
            accepted,
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

    /// Holds every RCPT TO for `address` unanswered until the returned
    /// handle releases them, as a recipient's slow mail server does: the
    /// client waits in the middle of the message.
    pub fn stall_recipient(&self, address: &str) -> StalledRecipient {
        let stall = Arc::new(Stall {
            held: watch::channel(0).0,
            released: watch::channel(false).0,
        });
        self.script
            .lock()
            .expect("script lock")
            .stalls
            .insert(address.to_string(), Arc::clone(&stall));
        StalledRecipient {
            address: address.to_string(),
            stall,
        }
    }

    /// Closes every connection once a message has been accepted on it,
    /// without waiting for QUIT.
    pub fn hang_up_after_each_message(&self) {
        self.script
            .lock()
            .expect("script lock")
            .hang_up_after_message = true;
    }

    /// How many connections the sink has accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn url(&self) -> String {
        self.scheme.replace("{}", &self.port.to_string())
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

    /// Waits (10 s at most) for messages after the first `seen` and returns
    /// just those: for a reader that hands each message out once.
    pub async fn wait_for_more(&self, seen: usize) -> Vec<ReceivedMail> {
        let mut count = self.count.clone();
        tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c > seen))
            .await
            .unwrap_or_else(|_| panic!("no email after the first {seen} within 10 s"))
            .expect("sink alive");
        self.received.lock().expect("sink lock")[seen..].to_vec()
    }
}

/// One connection to the sink.
struct Connection {
    store: Arc<Mutex<Vec<ReceivedMail>>>,
    counter: Arc<watch::Sender<usize>>,
    script: Arc<Mutex<Script>>,
}

/// How a run of the SMTP dialogue ended.
enum Ended {
    Closed,
    /// The client asked for STARTTLS and was told to go ahead.
    StartTls,
}

impl Connection {
    async fn serve(self, stream: tokio::net::TcpStream, security: SinkTls) -> std::io::Result<()> {
        let refusal = self
            .script
            .lock()
            .expect("script lock")
            .greetings
            .pop_front();
        match security {
            SinkTls::Plain => {
                self.dialogue(stream, refusal, Stage::Plain).await?;
            }
            SinkTls::Implicit(acceptor) => {
                let stream = acceptor.accept(stream).await?;
                self.dialogue(stream, refusal, Stage::Encrypted).await?;
            }
            SinkTls::StartTls(acceptor) => {
                let mut stream = stream;
                if let Ended::StartTls = self
                    .dialogue(&mut stream, refusal, Stage::BeforeStartTls)
                    .await?
                {
                    let stream = acceptor.accept(stream).await?;
                    self.dialogue(stream, None, Stage::AfterStartTls).await?;
                }
            }
        }
        Ok(())
    }

    async fn dialogue(
        &self,
        stream: impl AsyncRead + AsyncWrite + Unpin,
        refusal: Option<String>,
        stage: Stage,
    ) -> std::io::Result<Ended> {
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read);
        if let Some(reply) = refusal {
            write.write_all(format!("{reply}\r\n").as_bytes()).await?;
            write.flush().await?;
            return Ok(Ended::Closed);
        }
        // After STARTTLS the client speaks first (EHLO again).
        if stage != Stage::AfterStartTls {
            write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
            write.flush().await?;
        }
        let encrypted = matches!(stage, Stage::Encrypted | Stage::AfterStartTls);
        let mut from = String::new();
        let mut to = Vec::new();
        let mut line = String::new();
        loop {
            write.flush().await?;
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(Ended::Closed);
            }
            let command = line.trim_end().to_string();
            let upper = command.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                write.write_all(stage.extensions()).await?;
            } else if upper.starts_with("HELO") {
                write.write_all(b"250 sink.test\r\n").await?;
            } else if upper == "STARTTLS" && stage == Stage::BeforeStartTls {
                write.write_all(b"220 go ahead\r\n").await?;
                write.flush().await?;
                return Ok(Ended::StartTls);
            } else if stage == Stage::BeforeStartTls
                && (upper.starts_with("MAIL FROM:") || upper.starts_with("RCPT TO:"))
            {
                write
                    .write_all(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
                    .await?;
            } else if upper.starts_with("MAIL FROM:") {
                from = command[10..].trim().trim_matches(['<', '>']).to_string();
                to.clear();
                write.write_all(b"250 OK\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                let address = command[8..].trim().trim_matches(['<', '>']).to_string();
                match self.recipient_reply(&address).await {
                    Some(reply) => write.write_all(format!("{reply}\r\n").as_bytes()).await?,
                    None => {
                        to.push(address);
                        write.write_all(b"250 OK\r\n").await?;
                    }
                }
            } else if upper == "DATA" && !from.is_empty() {
                write.write_all(b"354 go ahead\r\n").await?;
                write.flush().await?;
                let Some(data) = read_data(&mut lines).await? else {
                    return Ok(Ended::Closed);
                };
                self.keep(ReceivedMail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                    encrypted,
                });
                write.write_all(b"250 OK queued\r\n").await?;
                if self
                    .script
                    .lock()
                    .expect("script lock")
                    .hang_up_after_message
                {
                    write.flush().await?;
                    return Ok(Ended::Closed);
                }
            } else if upper == "QUIT" {
                write.write_all(b"221 bye\r\n").await?;
                write.flush().await?;
                return Ok(Ended::Closed);
            } else if upper == "RSET" || upper == "NOOP" {
                write.write_all(b"250 OK\r\n").await?;
            } else {
                write.write_all(b"502 not implemented\r\n").await?;
            }
        }
    }

    /// The reply to `RCPT TO:<address>`, once a stall the test put on that
    /// recipient is released: the next one scripted for it, or none (250,
    /// and the address is a recipient).
    async fn recipient_reply(&self, address: &str) -> Option<String> {
        let stall = self
            .script
            .lock()
            .expect("script lock")
            .stalls
            .get(address)
            .cloned();
        if let Some(stall) = stall {
            let mut released = stall.released.subscribe();
            stall.held.send_modify(|count| *count += 1);
            let _ = released.wait_for(|released| *released).await;
        }
        self.script
            .lock()
            .expect("script lock")
            .rcpt
            .get_mut(address)
            .and_then(|replies| replies.pop_front())
    }

    /// Keeps a message received in full, for the tests that await it.
    fn keep(&self, mail: ReceivedMail) {
        self.store.lock().expect("sink lock").push(mail);
        self.counter.send_modify(|c| *c += 1);
    }
}

/// The message after DATA, up to the line with a lone dot, with the dots
/// that escape a leading dot removed; none if the client hung up first.
async fn read_data<R: AsyncBufRead + Unpin>(lines: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(Some(data));
        }
        let content = line.strip_prefix('.').unwrap_or(&line);
        data.extend_from_slice(content.as_bytes());
    }
}

/// Where a connection's dialogue stands with regard to encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Plain,
    Encrypted,
    BeforeStartTls,
    AfterStartTls,
}

impl Stage {
    /// The reply to EHLO: STARTTLS is offered until it has been used.
    fn extensions(self) -> &'static [u8] {
        if self == Stage::BeforeStartTls {
            b"250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n"
        } else {
            b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        }
    }
}
