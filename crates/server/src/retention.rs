//! What the server deletes as it ages: audit events past their retention
//! and session recordings past their keeping time, each at start and then
//! daily, by the server's clock (whose drift from the wall clock is
//! reported then too).

use doorman_broker::broker::Broker;
use std::sync::Arc;

/// Deletes audit events older than `audit_days` and recordings older than
/// `recording_days`, at start and then daily; says daily if the times the
/// server shows have drifted from the wall clock.
pub(crate) async fn prune(broker: Arc<Broker>, audit_days: u32, recording_days: u32) {
    let day = std::time::Duration::from_secs(86_400);
    let days_ago = |now: i64, days: u32| now - i64::from(days) * 86_400_000;
    loop {
        broker.clock().warn_of_drift();
        let now = broker.now_millis();
        match broker
            .store()
            .prune_audit(days_ago(now, audit_days), "retention", now)
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, audit_days, "old audit events deleted"),
            Err(error) => tracing::warn!(%error, "cannot prune the audit trail"),
        }
        match broker
            .store()
            .prune_recordings(days_ago(now, recording_days))
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, recording_days, "old session recordings deleted"),
            Err(error) => tracing::warn!(%error, "cannot prune session recordings"),
        }
        broker.recorder().keep_within_total().await;
        tokio::select! {
            () = broker.clock().sleep(day) => {}
            () = broker.lifecycle().stopping() => return,
        }
    }
}
