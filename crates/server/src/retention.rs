//! What the server deletes as it ages: audit events past their retention
//! and session recordings past their keeping time, each at start and then
//! daily.

use crate::broker::Broker;
use crate::clock;
use std::sync::Arc;

/// Whether shell sessions are recorded, and for how long recordings are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recordings {
    pub enabled: bool,
    pub keep_days: u32,
}

impl Default for Recordings {
    fn default() -> Self {
        Self {
            enabled: true,
            keep_days: DEFAULT_RECORDINGS_KEEP_DAYS,
        }
    }
}

/// How long recordings are kept unless told otherwise.
pub const DEFAULT_RECORDINGS_KEEP_DAYS: u32 = 90;

/// Deletes audit events older than `audit_days` and recordings older than
/// `recording_days`, at start and then daily.
pub(crate) async fn prune(broker: Arc<Broker>, audit_days: u32, recording_days: u32) {
    let day = std::time::Duration::from_secs(86_400);
    let days_ago = |now: i64, days: u32| now - i64::from(days) * 86_400_000;
    loop {
        let now = clock::now_millis();
        match broker
            .store
            .prune_audit(days_ago(now, audit_days), "retention", now)
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, audit_days, "old audit events deleted"),
            Err(error) => tracing::warn!(%error, "cannot prune the audit trail"),
        }
        match broker
            .store
            .prune_recordings(days_ago(now, recording_days))
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, recording_days, "old session recordings deleted"),
            Err(error) => tracing::warn!(%error, "cannot prune session recordings"),
        }
        tokio::select! {
            () = tokio::time::sleep(day) => {}
            () = broker.lifecycle.stopping() => return,
        }
    }
}
