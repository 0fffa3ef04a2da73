//! The sink's emails sorted by request, for benchmarks that run many
//! requests at once: each operator claims its request's mailbox and gets
//! that request's emails, whichever arrives first; and the recipients
//! opening their pages and clicking Allow together.

use crate::smtp::{ReceivedMail, SmtpSink};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A mailbox per request id.
#[derive(Default)]
pub struct Mailroom {
    boxes: Mutex<HashMap<String, Mailbox>>,
}

struct Mailbox {
    sender: mpsc::UnboundedSender<ReceivedMail>,
    receiver: Option<mpsc::UnboundedReceiver<ReceivedMail>>,
}

impl Mailroom {
    /// Sorts the emails `smtp` receives from now on, until the returned
    /// task is aborted.
    pub fn open(smtp: SmtpSink) -> (Arc<Mailroom>, JoinHandle<()>) {
        let mailroom = Arc::new(Mailroom::default());
        let seen = smtp.mails().len();
        let sorting = tokio::spawn(sort(smtp, seen, Arc::clone(&mailroom)));
        (mailroom, sorting)
    }

    /// The mailbox of request `id`; one claim per request.
    pub fn claim(&self, id: &str) -> mpsc::UnboundedReceiver<ReceivedMail> {
        self.with_box(id, |mailbox| mailbox.receiver.take())
            .expect("one operator per request")
    }

    /// The request is done with: its mailbox goes.
    pub fn forget(&self, id: &str) {
        self.boxes.lock().expect("mailroom lock").remove(id);
    }

    fn deliver(&self, id: &str, mail: ReceivedMail) {
        let _ = self.with_box(id, |mailbox| mailbox.sender.send(mail));
    }

    fn with_box<T>(&self, id: &str, f: impl FnOnce(&mut Mailbox) -> T) -> T {
        let mut boxes = self.boxes.lock().expect("mailroom lock");
        let mailbox = boxes.entry(id.to_string()).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            Mailbox {
                sender,
                receiver: Some(receiver),
            }
        });
        f(mailbox)
    }
}

/// Reads the sink from message `seen` on and sorts each message by the
/// request id in its Message-ID (`<REQUEST.POSITION@host>`).
async fn sort(smtp: SmtpSink, mut seen: usize, mailroom: Arc<Mailroom>) {
    loop {
        let mails = smtp.wait_for_more(seen).await;
        seen += mails.len();
        for mail in mails {
            let message_id = mail.header("Message-ID").expect("a Message-ID");
            let id = message_id
                .trim_start_matches('<')
                .split('.')
                .next()
                .expect("a request id")
                .to_string();
            mailroom.deliver(&id, mail);
        }
    }
}

impl Mailroom {
    /// The links of request `id`'s first `n` emails (10 s at most for
    /// each); the request's mailbox then goes.
    pub async fn links(&self, id: &str, n: usize) -> Vec<String> {
        let mut mailbox = self.claim(id);
        let mut links = Vec::with_capacity(n);
        for _ in 0..n {
            let mail = tokio::time::timeout(std::time::Duration::from_secs(10), mailbox.recv())
                .await
                .unwrap_or_else(|_| panic!("request {id}: {n} emails within 10 s"))
                .expect("the mailroom runs");
            links.push(mail.link());
        }
        self.forget(id);
        links
    }
}

/// Each recipient opens their approval page: the nonce of each page's form.
pub async fn open_pages(http: &reqwest::Client, links: &[String]) -> Vec<String> {
    let mut nonces = Vec::with_capacity(links.len());
    for link in links {
        let page = http.get(link).send().await.expect("GET page");
        let page = page.text().await.expect("page");
        nonces.push(crate::world::extract_nonce(&page).expect("the page has a form"));
    }
    nonces
}

/// Every recipient clicks Allow at once (each click must be taken: 303);
/// the time from the clicks to the operator's `session_started`.
pub async fn allow_at_once(
    http: &reqwest::Client,
    links: &[String],
    nonces: &[String],
    connecting: &crate::connecting::Connecting,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    let clicks: Vec<_> = links
        .iter()
        .zip(nonces)
        .map(|(link, nonce)| {
            tokio::spawn(
                http.post(link)
                    .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
                    .send(),
            )
        })
        .collect();
    connecting.event("session_started").await;
    let latency = start.elapsed();
    for click in clicks {
        assert_eq!(
            click.await.expect("a click").expect("POST").status(),
            reqwest::StatusCode::SEE_OTHER,
            "an Allow click is taken"
        );
    }
    latency
}
