//! The server's stop, and the tasks that must end before it has stopped.

use std::future::Future;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every task the server starts is tracked here, so that stopping waits for
/// them all; every long wait selects on [`Lifecycle::stopping`].
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Lifecycle {
    /// Spawns a task that stopping waits for.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(future);
    }

    /// Tells every task to stop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Completes once the server is stopping.
    pub async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// Waits until every task started with [`Lifecycle::spawn`] has ended.
    pub async fn wait_for_tasks(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
