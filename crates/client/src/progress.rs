//! Telling the operator how the connection goes: a human line with a live
//! countdown on a terminal, or one JSON object per state change (`--json`).

use doorman_wire::message::{DeliveryState, EndCause};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Human lines; `live` redraws a countdown line every second.
    Human { live: bool },
    /// One JSON object per line.
    Json,
}

/// Writes progress to a stream (stderr in the binary).
pub struct Progress {
    style: ProgressStyle,
    out: Box<dyn Write + Send>,
    recipients: Vec<Recipient>,
    line_open: bool,
}

/// A recipient as the countdown names it (masked), and how its email is
/// doing: nothing heard yet, `sending…`, then the relay's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recipient {
    name: String,
    delivery: Option<DeliveryState>,
}

impl Recipient {
    /// The name, with the email's state after it once there is news.
    fn with_delivery(&self) -> String {
        match self.delivery {
            None => self.name.clone(),
            Some(state) => format!("{} ({})", self.name, human_state(state)),
        }
    }
}

/// A delivery state as the countdown line shows it.
fn human_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Sending => "sending…",
        DeliveryState::Sent => "sent",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Failed => "failed",
    }
}

/// A delivery state as `--json` names it (the wire's name).
fn json_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Sending => "sending",
        DeliveryState::Sent => "sent",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Failed => "failed",
    }
}

impl Progress {
    pub fn new(style: ProgressStyle, out: Box<dyn Write + Send>) -> Self {
        Self {
            style,
            out,
            recipients: Vec::new(),
            line_open: false,
        }
    }

    /// Who is waited for, for the human lines.
    fn waiting_for(&self) -> String {
        listed(&self.recipients, |r: &Recipient| r.name.clone())
    }

    /// Records news of the email to `name`. Two addresses may mask alike:
    /// the news goes to one of theirs that has not settled (sent, failed)
    /// and is not in this state already, so that the states shown are
    /// right even if which is which cannot be told.
    fn note_delivery(&mut self, name: &str, state: DeliveryState) {
        let open = |r: &Recipient| {
            r.name == name
                && r.delivery != Some(state)
                && !matches!(
                    r.delivery,
                    Some(DeliveryState::Sent | DeliveryState::Failed)
                )
        };
        let index = self
            .recipients
            .iter()
            .position(open)
            .or_else(|| self.recipients.iter().position(|r| r.name == name));
        if let Some(index) = index {
            self.recipients[index].delivery = Some(state);
        }
    }

    /// Whether progress goes out as JSON lines.
    pub(crate) fn is_json(&self) -> bool {
        self.style == ProgressStyle::Json
    }

    /// Whether a live line (a countdown, a progress bar) may be drawn.
    pub(crate) fn is_live(&self) -> bool {
        self.style == ProgressStyle::Human { live: true }
    }

    /// One JSON event, for the session's own news (`doorman cp`).
    pub(crate) fn event(&mut self, value: serde_json::Value) {
        self.json(value);
    }

    /// One human line, for the session's own news.
    pub(crate) fn say(&mut self, text: &str) {
        self.line(text);
    }

    fn json(&mut self, value: serde_json::Value) {
        // One write per line, so a reader never sees half an object.
        let _ = self.out.write_all(format!("{value}\n").as_bytes());
        let _ = self.out.flush();
    }

    fn line(&mut self, text: &str) {
        self.clear_line();
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Ends a live countdown line so that the next output starts clean.
    pub fn clear_line(&mut self) {
        if self.line_open {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
            self.line_open = false;
        }
    }

    pub fn pending(&mut self, request_id: &str, expires_in: u64, recipients: &[String]) {
        // Told again after a reconnect: the news heard so far still holds.
        let same = self.recipients.len() == recipients.len()
            && self
                .recipients
                .iter()
                .zip(recipients)
                .all(|(r, n)| r.name == *n);
        if !same {
            self.recipients = recipients
                .iter()
                .map(|name| Recipient {
                    name: name.clone(),
                    delivery: None,
                })
                .collect();
        }
        match self.style {
            ProgressStyle::Json => self.json(json!({
                "event": "pending",
                "request_id": request_id,
                "expires_in": expires_in,
                "recipients": recipients,
            })),
            ProgressStyle::Human { live: true } => self.tick(Duration::from_secs(expires_in)),
            ProgressStyle::Human { live: false } => {
                let text = format!(
                    "Waiting for email authorization from {}: expires in {expires_in} s",
                    self.waiting_for()
                );
                self.line(&text);
            }
        }
    }

    /// Redraws the countdown (live terminals only).
    pub fn tick(&mut self, left: Duration) {
        if let ProgressStyle::Human { live: true } = self.style {
            let millis = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
            let secs = doorman_core::authorization::seconds_left(millis, 0);
            let width = crate::tty::stderr_width();
            let line = countdown_line(&self.recipients, secs, width);
            let _ = write!(self.out, "\r\x1b[2K{line}");
            let _ = self.out.flush();
            self.line_open = true;
        }
    }

    /// How the email to one recipient is doing.
    pub fn delivery(&mut self, recipient: &str, state: DeliveryState, detail: Option<&str>) {
        self.note_delivery(recipient, state);
        let name = json_state(state);
        match self.style {
            ProgressStyle::Json => self.json(json!({
                "event": "delivery",
                "recipient": recipient,
                "state": name,
                "detail": detail,
            })),
            // The countdown line shows each email's state; only trouble
            // gets a line of its own.
            ProgressStyle::Human { .. } => match (state, detail) {
                (DeliveryState::Sending | DeliveryState::Sent, _) => {}
                (_, detail) => {
                    let text = format!(
                        "Email to {recipient} {name}: {}",
                        detail.unwrap_or("no reason given")
                    );
                    self.line(&text);
                }
            },
        }
    }

    /// A recipient's Allow was counted; more are needed.
    pub fn approval(&mut self, approvals: u32, required: u32, by: &str) {
        match self.style {
            ProgressStyle::Json => self.json(json!({
                "event": "approval",
                "approvals": approvals,
                "required": required,
                "by": by,
            })),
            ProgressStyle::Human { .. } => {
                self.line(&format!("{approvals} of {required} approvals, by {by}"));
            }
        }
    }

    /// The connection to the server was lost; the request is being resumed.
    pub fn reconnecting(&mut self) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "reconnecting"})),
            ProgressStyle::Human { .. } => {
                self.line("Lost the connection to the server; reconnecting…")
            }
        }
    }

    pub fn admitted(&mut self) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "admitted"})),
            ProgressStyle::Human { .. } => {}
        }
    }

    pub fn allowed(&mut self, by: &str, at: i64) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "allowed", "by": by, "at": at})),
            ProgressStyle::Human { .. } => self.line(&format!("Allowed by {by}.")),
        }
    }

    pub fn denied(&mut self, by: &str, at: i64) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "denied", "by": by, "at": at})),
            ProgressStyle::Human { .. } => self.clear_line(),
        }
    }

    pub fn expired(&mut self, at: i64) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "expired", "at": at})),
            ProgressStyle::Human { .. } => self.clear_line(),
        }
    }

    /// The request's deadline passed `grace_secs` ago without the server
    /// confirming its expiry; `connect` gives up (the error says so).
    pub fn expiry_unconfirmed(&mut self, grace_secs: u64) {
        match self.style {
            ProgressStyle::Json => self.json(json!({
                "event": "expiry_unconfirmed",
                "grace_secs": grace_secs,
            })),
            ProgressStyle::Human { .. } => self.clear_line(),
        }
    }

    pub fn cancelled(&mut self) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "cancelled"})),
            ProgressStyle::Human { .. } => self.clear_line(),
        }
    }

    /// The computer proved its identity: one remembered (`known`), or one
    /// met for the first time and remembered in `file` (trusted on first
    /// use, as ssh does).
    pub fn identity(&mut self, computer: &str, fingerprint: &str, known: bool, file: &Path) {
        match self.style {
            ProgressStyle::Json => self.json(json!({
                "event": "identity",
                "computer": computer,
                "fingerprint": fingerprint,
                "known": known,
            })),
            ProgressStyle::Human { .. } if known => {}
            ProgressStyle::Human { .. } => self.line(&format!(
                "First session with {computer}: its identity is {fingerprint}; remembered in {}.",
                file.display()
            )),
        }
    }

    /// The known-computers file could not be written: the session goes
    /// on, and the next one meets the computer as new again.
    pub fn identity_not_remembered(&mut self, problem: &str) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "warning", "message": problem})),
            ProgressStyle::Human { .. } => self.line(&format!("doorman: warning: {problem}")),
        }
    }

    pub fn session_started(&mut self, time_limit_secs: Option<u64>) {
        match (self.style, time_limit_secs) {
            (ProgressStyle::Json, _) => self.json(json!({
                "event": "session_started",
                "time_limit_secs": time_limit_secs,
            })),
            (ProgressStyle::Human { .. }, Some(secs)) => {
                self.line(&format!("This computer ends sessions after {secs} s."));
            }
            (ProgressStyle::Human { .. }, None) => self.clear_line(),
        }
    }

    /// The session's time limit is near.
    pub fn time_warning(&mut self, left: Duration) {
        let secs = left.as_secs();
        match self.style {
            ProgressStyle::Json => {
                self.json(json!({"event": "time_warning", "seconds_left": secs}))
            }
            ProgressStyle::Human { .. } => {
                self.line(&format!(
                    "\r\nThe session ends in {secs} s (the computer's time limit).\r"
                ));
            }
        }
    }

    /// An earlier approval covers this connection: no emails.
    pub fn approved_earlier(&mut self, request_id: &str, by: &str, valid_for: u64) {
        match self.style {
            ProgressStyle::Json => self.json(json!({
                "event": "approved_earlier",
                "request_id": request_id,
                "by": by,
                "valid_for": valid_for,
            })),
            ProgressStyle::Human { .. } => {
                self.line(&format!(
                    "Approved earlier by {by}, valid {valid_for} more seconds."
                ));
            }
        }
    }

    /// A forward session listens; each entry is `local -> target`.
    pub fn forwarding(&mut self, listening: &[String]) {
        match self.style {
            ProgressStyle::Json => self.json(json!({"event": "forwarding", "listen": listening})),
            ProgressStyle::Human { .. } => {
                for line in listening {
                    self.line(&format!("Forwarding {line} (Ctrl-C stops)"));
                }
            }
        }
    }

    pub fn session_ended(&mut self, exit_code: i32) {
        if let ProgressStyle::Json = self.style {
            self.json(json!({"event": "session_ended", "exit_code": exit_code}));
        }
    }

    /// The server ended the session, for `cause`, and said so in `message`
    /// (which the error `connect` returns prints: not repeated here).
    pub fn session_cut(&mut self, cause: EndCause, message: &str, exit_code: i32) {
        if let ProgressStyle::Json = self.style {
            self.json(json!({
                "event": "session_ended",
                "cause": cause,
                "message": message,
                "exit_code": exit_code,
            }));
        }
    }
}

/// The recipients, each as `describe` puts it.
fn listed(recipients: &[Recipient], describe: impl Fn(&Recipient) -> String) -> String {
    if recipients.is_empty() {
        // No emails: an earlier approval was reused, and the computer
        // waits for its local Allow.
        return "the person at the computer".to_string();
    }
    let described: Vec<String> = recipients.iter().map(describe).collect();
    described.join(", ")
}

/// The live countdown, fitted to a terminal `width` columns wide: a line
/// that wrapped would be redrawn below itself on every tick. The longest
/// form that fits wins (the recipients with their emails' states, then
/// their names alone); the last resort is cut. At 0 the server's word on
/// the expiry is awaited.
fn countdown_line(recipients: &[Recipient], secs: u64, width: usize) -> String {
    let forms = if secs == 0 {
        vec![
            "Time is up: waiting for the server to confirm the expiry (Ctrl-C cancels)".to_string(),
            "Time is up: waiting for the server to confirm the expiry".to_string(),
            "Time is up: waiting for the server".to_string(),
            "Time is up".to_string(),
        ]
    } else {
        let with_states = listed(recipients, Recipient::with_delivery);
        let names = listed(recipients, |r: &Recipient| r.name.clone());
        vec![
            format!(
                "Waiting for email authorization from {with_states}: {secs} s left (Ctrl-C cancels)"
            ),
            format!("Waiting for email authorization from {names}: {secs} s left (Ctrl-C cancels)"),
            format!("Waiting for email authorization: {secs} s left (Ctrl-C cancels)"),
            format!("Waiting for email authorization: {secs} s left"),
            format!("Waiting: {secs} s left"),
        ]
    };
    // One column spare: a line that fills the last column wraps on some terminals.
    let room = width.saturating_sub(1).max(1);
    forms
        .iter()
        .find(|form| form.chars().count() <= room)
        .cloned()
        .unwrap_or_else(|| {
            let last = forms.last().map_or("", String::as_str);
            last.chars().take(room).collect()
        })
}

#[cfg(test)]
mod tests {
    use super::{DeliveryState, Progress, ProgressStyle, countdown_line};

    fn waiting_for(recipients: &[&str]) -> Progress {
        let mut progress = Progress::new(
            ProgressStyle::Human { live: false },
            Box::new(std::io::sink()),
        );
        let names: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
        progress.pending("r1", 180, &names);
        progress
    }

    #[test]
    fn the_countdown_fits_the_terminal() {
        let progress = waiting_for(&["i***@example.com", "o***@example.com"]);
        let recipients = "i***@example.com, o***@example.com";
        for width in [200, 80, 60, 40, 20, 5] {
            let line = countdown_line(&progress.recipients, 179, width);
            assert!(line.chars().count() < width, "{width}: {line:?}");
            assert!(line.contains("179") || width < 10, "{width}: {line:?}");
        }
        assert!(countdown_line(&progress.recipients, 179, 200).contains(recipients));
    }

    #[test]
    fn the_countdown_shows_each_emails_state() {
        let mut progress = waiting_for(&["i***@example.com", "o***@example.com"]);
        progress.delivery("i***@example.com", DeliveryState::Sending, None);
        progress.delivery("o***@example.com", DeliveryState::Sending, None);
        progress.delivery("o***@example.com", DeliveryState::Sent, None);
        let line = countdown_line(&progress.recipients, 170, 200);
        assert_eq!(
            line,
            "Waiting for email authorization from i***@example.com (sending…), o***@example.com (sent): 170 s left (Ctrl-C cancels)"
        );
        // Too narrow for the states: the names alone.
        let narrow = countdown_line(&progress.recipients, 170, 110);
        assert!(
            narrow.contains("from i***@example.com, o***@example.com:"),
            "{narrow:?}"
        );
        // Told again after a reconnect: the news heard so far holds.
        let names = [
            "i***@example.com".to_string(),
            "o***@example.com".to_string(),
        ];
        progress.pending("r1", 160, &names);
        assert!(countdown_line(&progress.recipients, 160, 200).contains("(sending…)"));
    }

    #[test]
    fn addresses_that_mask_alike_each_show_a_state() {
        let mut progress = waiting_for(&["i***@example.com", "i***@example.com"]);
        progress.delivery("i***@example.com", DeliveryState::Sending, None);
        progress.delivery("i***@example.com", DeliveryState::Sending, None);
        progress.delivery("i***@example.com", DeliveryState::Sent, None);
        progress.delivery("i***@example.com", DeliveryState::Retrying, Some("451"));
        let states: Vec<_> = progress.recipients.iter().map(|r| r.delivery).collect();
        assert_eq!(
            states,
            [Some(DeliveryState::Sent), Some(DeliveryState::Retrying)]
        );
    }

    #[test]
    fn at_zero_the_countdown_says_the_server_is_awaited() {
        for width in [200, 80, 40, 20, 5] {
            let line = countdown_line(&[], 0, width);
            assert!(line.chars().count() < width, "{width}: {line:?}");
            assert!(line.starts_with("Time"), "{width}: {line:?}");
        }
        assert!(countdown_line(&[], 0, 200).contains("confirm the expiry"));
    }
}
