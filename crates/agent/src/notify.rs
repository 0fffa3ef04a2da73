//! Telling the remote computer's owner what is happening: a log line for
//! every event, a desktop notification when a session bus is there, and the
//! owner's own `notify_command` with the event's details in its environment.

use std::process::Stdio;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Who is connecting, for what: the part every notification shares.
#[derive(Clone, Debug, Default)]
pub struct Visitor {
    pub operator: String,
    pub operator_ip: String,
    pub reason: String,
    pub service: String,
}

/// What happened.
#[derive(Clone, Debug)]
pub enum Event {
    /// Email authorization is pending.
    AwaitingAuthorization {
        recipients: Vec<String>,
        expires_in: u32,
    },
    /// Email authorization is off: the operator is let in.
    Connecting,
    Allowed {
        by: String,
    },
    Denied {
        by: String,
    },
    Expired,
    Cancelled,
    /// An offer the settings do not allow.
    Refused {
        message: String,
    },
    SessionStarted,
    SessionEnded {
        status: String,
    },
}

impl Event {
    /// The value of `DOORMAN_EVENT`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::AwaitingAuthorization { .. } => "waiting_for_authorization",
            Event::Connecting => "connecting",
            Event::Allowed { .. } => "allowed",
            Event::Denied { .. } => "denied",
            Event::Expired => "expired",
            Event::Cancelled => "cancelled",
            Event::Refused { .. } => "refused",
            Event::SessionStarted => "session_started",
            Event::SessionEnded { .. } => "session_ended",
        }
    }

    fn text(&self, visitor: &Visitor) -> String {
        let who = format!("{} ({})", visitor.operator, visitor.operator_ip);
        match self {
            Event::AwaitingAuthorization {
                recipients,
                expires_in,
            } => format!(
                "{who} is connecting to {}; reason: {:?}. Email authorization pending: sent to {}; expires in {expires_in} s",
                visitor.service,
                visitor.reason,
                recipients.join(", ")
            ),
            Event::Connecting => format!(
                "{who} is connecting to {}; reason: {:?}. Email authorization is off",
                visitor.service, visitor.reason
            ),
            Event::Allowed { by } => format!("connection of {who} allowed by {by}"),
            Event::Denied { by } => format!("connection of {who} denied by {by}"),
            Event::Expired => format!("connection of {who} expired: nobody decided in time"),
            Event::Cancelled => format!("connection of {who} cancelled by the operator"),
            Event::Refused { message } => format!("refused {who}: {message}"),
            Event::SessionStarted => format!("session of {who} started: {}", visitor.service),
            Event::SessionEnded { status } => format!("session of {who} ended: {status}"),
        }
    }
}

/// Shows a notification in every way the computer offers.
pub fn show(notify_command: Option<&str>, visitor: &Visitor, event: &Event) {
    let text = event.text(visitor);
    tracing::info!(target: "doorman::notify", "{text}");
    if let Some(command) = notify_command {
        run_command(command, visitor, event);
    }
    desktop(&text);
}

/// The environment a `notify_command` gets.
pub fn environment(visitor: &Visitor, event: &Event) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DOORMAN_EVENT", event.name().to_string()),
        ("DOORMAN_OPERATOR", visitor.operator.clone()),
        ("DOORMAN_OPERATOR_IP", visitor.operator_ip.clone()),
        ("DOORMAN_REASON", visitor.reason.clone()),
        ("DOORMAN_SERVICE", visitor.service.clone()),
    ];
    match event {
        Event::AwaitingAuthorization {
            recipients,
            expires_in,
        } => {
            env.push(("DOORMAN_RECIPIENTS", recipients.join(",")));
            env.push(("DOORMAN_EXPIRES_IN", expires_in.to_string()));
        }
        Event::Allowed { by } | Event::Denied { by } => {
            env.push(("DOORMAN_DECIDED_BY", by.clone()))
        }
        Event::SessionEnded { status } => env.push(("DOORMAN_STATUS", status.clone())),
        Event::Refused { message } => env.push(("DOORMAN_MESSAGE", message.clone())),
        Event::Connecting | Event::Expired | Event::Cancelled | Event::SessionStarted => {}
    }
    env
}

type Job = (String, Vec<(&'static str, String)>);

/// Runs notify commands one at a time, in the order of their events, so the
/// owner's script never sees "session ended" before "allowed". The queue is
/// started on the current runtime, and again if that runtime has gone.
fn enqueue(job: Job) {
    static QUEUE: Mutex<Option<mpsc::UnboundedSender<Job>>> = Mutex::new(None);
    let Ok(mut queue) = QUEUE.lock() else { return };
    let job = match queue.as_ref() {
        Some(sender) => match sender.send(job) {
            Ok(()) => return,
            Err(mpsc::error::SendError(job)) => job,
        },
        None => job,
    };
    let (sender, mut receiver) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        while let Some((command, env)) = receiver.recv().await {
            let spawned = shell(&command)
                .envs(env)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                // A hung script must not hold up the events after it.
                Ok(mut child) => {
                    if tokio::time::timeout(NOTIFY_COMMAND_TIMEOUT, child.wait())
                        .await
                        .is_err()
                    {
                        tracing::warn!("notify_command ran longer than 30 s; stopped it");
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot run notify_command"),
            }
        }
    });
    let _ = sender.send(job);
    *queue = Some(sender);
}

const NOTIFY_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `command` run by the system's shell: `/bin/sh -c`.
#[cfg(not(windows))]
fn shell(command: &str) -> tokio::process::Command {
    let mut shell = tokio::process::Command::new("/bin/sh");
    shell.arg("-c").arg(command);
    shell
}

/// `command` run by the system's shell: `cmd.exe /C`, the line passed as
/// written (cmd parses its own quotes).
#[cfg(windows)]
fn shell(command: &str) -> tokio::process::Command {
    let mut shell = tokio::process::Command::new("cmd.exe");
    shell.arg("/C").raw_arg(command);
    shell
}

fn run_command(command: &str, visitor: &Visitor, event: &Event) {
    enqueue((command.to_string(), environment(visitor, event)));
}

/// A desktop notification through `notify-send` when a session bus is
/// reachable; silently nothing otherwise.
#[cfg(not(windows))]
fn desktop(text: &str) {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return;
    }
    let spawned = tokio::process::Command::new("notify-send")
        .args(["--app-name=Doorman", "Doorman", text])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut child) = spawned {
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
    }
}

/// On Windows the tray icon shows notifications, where one runs in this
/// process (`doorman_owner::tray`); silently nothing otherwise.
#[cfg(windows)]
fn desktop(text: &str) {
    let _ = desktop_sender().send(text.to_string());
}

fn desktop_sender() -> &'static tokio::sync::broadcast::Sender<String> {
    static NOTES: std::sync::OnceLock<tokio::sync::broadcast::Sender<String>> =
        std::sync::OnceLock::new();
    NOTES.get_or_init(|| tokio::sync::broadcast::channel(16).0)
}

/// The notifications of this process from now on, for a tray icon that
/// shows them (Windows).
pub fn desktop_notes() -> tokio::sync::broadcast::Receiver<String> {
    desktop_sender().subscribe()
}
