//! An operator's `connect` running in a test: its progress (and the request
//! id its `pending` event names), output and result, and the shared buffers
//! a test awaits what was written to.

use doorman_client::ConnectError;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// An operator's connection in progress.
pub struct Connecting {
    pub(crate) task: JoinHandle<Result<i32, ConnectError>>,
    pub(crate) cancel: Option<oneshot::Sender<()>>,
    pub progress: SharedBuf,
    pub stdout: SharedBuf,
    pub stderr: SharedBuf,
}

impl Connecting {
    /// Runs `connect` for `request` in a task of its own, typing what
    /// `stdin` gives, its progress as JSON lines.
    pub fn start(
        request: doorman_client::ConnectRequest,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Connecting {
        use doorman_client::{Progress, ProgressStyle, Terminal};
        let progress_buf = SharedBuf::default();
        let stdout = SharedBuf::default();
        let stderr = SharedBuf::default();
        let (cancel, cancelled) = oneshot::channel::<()>();
        let terminal = Terminal {
            stdin,
            stdout: Box::new(stdout.clone()),
            stderr: Box::new(stderr.clone()),
            is_tty: false,
        };
        let mut progress = Progress::new(ProgressStyle::Json, Box::new(progress_buf.clone()));
        let task = tokio::spawn(async move {
            doorman_client::connect(request, &mut progress, terminal, async move {
                // A dropped sender is no interrupt.
                if cancelled.await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
        });
        Connecting {
            task,
            cancel: Some(cancel),
            progress: progress_buf,
            stdout,
            stderr,
        }
    }

    /// The operator's process dies: its connection closes without a word.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Presses Ctrl-C.
    pub fn interrupt(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
    }

    /// Waits until a progress event of this kind has been reported; returns it.
    pub async fn event(&self, kind: &str) -> serde_json::Value {
        let wanted = format!("\"event\":\"{kind}\"");
        let complete =
            |text: &str| text.lines().any(|line| line.contains(&wanted)) && text.ends_with('\n');
        let text = self.progress.wait_until(complete).await;
        text.lines()
            .find(|line| line.contains(&wanted))
            .and_then(|line| serde_json::from_str(line).ok())
            .expect("a JSON event line")
    }

    /// The request id of the `pending` event.
    pub async fn request_id(&self) -> String {
        request_id(&self.event("pending").await)
    }

    /// The local address of the first `-L` listener, once forwarding.
    pub async fn forwarding_address(&self) -> std::net::SocketAddr {
        let event = self.event("forwarding").await;
        event["listen"][0]
            .as_str()
            .and_then(|listen| listen.split(" -> ").next())
            .and_then(|local| local.parse().ok())
            .expect("a listen address")
    }

    /// The result of `connect`: the exit status or why there was no session.
    pub async fn finish(self) -> Result<i32, ConnectError> {
        tokio::time::timeout(std::time::Duration::from_secs(20), self.task)
            .await
            .expect("connect finishes in time")
            .expect("connect task")
    }
}

/// The request id in a `pending` event.
pub fn request_id(pending: &serde_json::Value) -> String {
    pending["request_id"]
        .as_str()
        .expect("request_id")
        .to_string()
}

/// A byte buffer shared between a writer under test and the test, which can
/// await what gets written.
#[derive(Clone, Default)]
pub struct SharedBuf {
    bytes: Arc<Mutex<Vec<u8>>>,
    written: Arc<Mutex<Option<watch::Sender<usize>>>>,
}

impl SharedBuf {
    fn notify(&self) {
        let mut written = self.written.lock().expect("lock");
        let sender = written.get_or_insert_with(|| watch::channel(0).0);
        sender.send_modify(|n| *n += 1);
    }

    fn subscribe(&self) -> watch::Receiver<usize> {
        let mut written = self.written.lock().expect("lock");
        written
            .get_or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().expect("lock")).to_string()
    }

    /// Waits (10 s at most) until the text satisfies `done`.
    pub async fn wait_until(&self, done: impl Fn(&str) -> bool) -> String {
        let mut changes = self.subscribe();
        let wait = async {
            loop {
                let text = self.text();
                if done(&text) {
                    return text;
                }
                if changes.changed().await.is_err() {
                    return self.text();
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out; got so far: {}", self.text()))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.lock().expect("lock").extend_from_slice(buf);
        self.notify();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncWrite for SharedBuf {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Write::write(self.get_mut(), buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
