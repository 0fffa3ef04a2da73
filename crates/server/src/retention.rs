//! What the server deletes as it ages: audit events past their retention
//! and session recordings past their keeping time, each at start and then
//! daily, by the server's clock (whose drift from the wall clock is
//! reported then too).

use crate::broker::Broker;
use std::sync::Arc;

/// Whether shell sessions are recorded, and for how long recordings are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recordings {
    pub enabled: bool,
    pub keep_days: u32,
    /// Bytes of asciicast text one session's recording may hold; past it
    /// the recording says "truncated" and records nothing more.
    pub max_bytes: u64,
    /// Bytes all finished recordings may take in the database together
    /// (compressed); past it the oldest are deleted first.
    pub max_total_bytes: u64,
}

impl Default for Recordings {
    fn default() -> Self {
        Self {
            enabled: true,
            keep_days: DEFAULT_RECORDINGS_KEEP_DAYS,
            max_bytes: DEFAULT_RECORDING_MAX_BYTES,
            max_total_bytes: DEFAULT_RECORDINGS_MAX_TOTAL_BYTES,
        }
    }
}

/// How long recordings are kept unless told otherwise.
pub const DEFAULT_RECORDINGS_KEEP_DAYS: u32 = 90;
/// One session's recording: 64 MiB of asciicast text.
pub const DEFAULT_RECORDING_MAX_BYTES: u64 = 64 << 20;
/// All recordings together: 10 GiB stored.
pub const DEFAULT_RECORDINGS_MAX_TOTAL_BYTES: u64 = 10 << 30;

/// Deletes audit events older than `audit_days` and recordings older than
/// `recording_days`, at start and then daily; says daily if the times the
/// server shows have drifted from the wall clock.
pub(crate) async fn prune(broker: Arc<Broker>, audit_days: u32, recording_days: u32) {
    let day = std::time::Duration::from_secs(86_400);
    let days_ago = |now: i64, days: u32| now - i64::from(days) * 86_400_000;
    loop {
        broker.clock.warn_of_drift();
        let now = broker.clock.now_millis();
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
        keep_recordings_within(&broker).await;
        tokio::select! {
            () = broker.clock.sleep(day) => {}
            () = broker.lifecycle.stopping() => return,
        }
    }
}

/// Deletes the oldest finished recordings until all of them together fit
/// within `--recordings-max-total-bytes`.
pub(crate) async fn keep_recordings_within(broker: &Broker) {
    let max = broker.recordings.max_total_bytes;
    match broker
        .store
        .prune_recordings_beyond(
            i64::try_from(max).unwrap_or(i64::MAX),
            broker.clock.now_millis(),
        )
        .await
    {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(
            pruned,
            max_total_bytes = max,
            "oldest session recordings deleted to stay within their total size"
        ),
        Err(error) => tracing::warn!(%error, "cannot prune session recordings"),
    }
}
