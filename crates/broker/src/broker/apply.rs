//! The one path by which a request changes ([`Broker::apply`]): the state
//! machine's step on the request as stored, persisted with one conditional
//! write (read again and reapplied when something else changed it first),
//! and the news pushed at once: an approval to the waiting operator, an
//! outcome to the operator and the agent.

use super::{Applied, Broker, Witness};
use doorman_core::Request;
use doorman_core::authorization::{Event, PendingRequest, Step};
use doorman_store::transitions::transition_audit;
use doorman_store::{AuditEvent, Block, Millis, RequestRow, StoreError};
use doorman_wire::message::ServerToOperator;

impl Broker {
    /// Applies an event to a request: runs the state machine on the request
    /// as stored, persists its step with one conditional write (reading
    /// again and reapplying when something else changed it first), and
    /// pushes the news: an approval to the waiting operator, an outcome to
    /// the operator and the agent.
    pub async fn apply(
        &self,
        request_id: &str,
        event: Event,
        witness: Witness,
    ) -> Result<Applied, StoreError> {
        self.apply_from(request_id, None, event, witness).await
    }

    /// [`Broker::apply`] to the request as the caller has just read it
    /// (a recipient's link finds it): settled, or pending with no approval
    /// counted, there is nothing more to read before the conditional
    /// write, which a row gone stale meanwhile loses, to be read again as
    /// in any race.
    pub async fn apply_to(
        &self,
        row: RequestRow,
        event: Event,
        witness: Witness,
    ) -> Result<Applied, StoreError> {
        let id = row.id.clone();
        self.apply_from(&id, Some(row), event, witness).await
    }

    async fn apply_from(
        &self,
        request_id: &str,
        mut read: Option<RequestRow>,
        event: Event,
        witness: Witness,
    ) -> Result<Applied, StoreError> {
        // Each retry means another transition won in between; a request
        // has at most a few dozen recipients.
        for _ in 0..64 {
            let loaded = match read.take() {
                Some(row) => match row.outcome() {
                    // Settled stays settled: nothing more to read (the
                    // caller shows the request as stored next).
                    Some(outcome) => return Ok(Applied::AlreadySettled(outcome)),
                    None if row.approval_count == 0 => {
                        let machine = row.machine(Vec::new());
                        Some((row, machine))
                    }
                    None => self.store.load(request_id).await?,
                },
                None => self.store.load(request_id).await?,
            };
            let Some((row, machine)) = loaded else {
                return Ok(Applied::Unknown);
            };
            let pending = match machine {
                Request::Pending(pending) => pending,
                Request::Settled(settled) => {
                    return Ok(Applied::AlreadySettled(settled.outcome().clone()));
                }
            };
            let at = event.at();
            let step = pending.apply(event.clone());
            let Some(mut audit) = transition_audit(&row, &step, at) else {
                if let Step::Unchanged(_, why) = step {
                    return Ok(Applied::Unchanged(why));
                }
                continue;
            };
            witness.stamp(&mut audit);
            let block = self.report_block(&row, &step, at, &witness, &mut audit);
            let assertion = witness.assertion.as_deref();
            let persisted = self
                .store
                .persist(&row, &step, at, &audit, block.as_ref(), assertion);
            if !persisted.await? {
                continue;
            }
            return Ok(self.announce(request_id, &row, step, &witness, at).await);
        }
        Err(StoreError::Contended(request_id.to_string()))
    }

    /// The block a report ("I did not expect this") writes with its Deny,
    /// and its note in place of the audit event's; none for any other
    /// step, nor for a request whose operator or computer is gone (from
    /// before ids were kept): it blocks no one.
    fn report_block(
        &self,
        row: &RequestRow,
        step: &Step,
        at: Millis,
        witness: &Witness,
        audit: &mut AuditEvent,
    ) -> Option<Block> {
        let Step::Settled(settled) = step else {
            return None;
        };
        if !settled.reported() {
            return None;
        }
        let minutes = self.limits.block_minutes;
        audit.detail = Some(format!(
            "recipient did not expect this request; {} blocked from {} for {minutes} minutes",
            row.operator, row.computer
        ));
        row.operator_id
            .zip(row.computer_id)
            .map(|(operator, computer)| Block {
                operator,
                computer,
                until: at + i64::from(minutes) * 60_000,
                reported_by: witness.actor.clone().unwrap_or_default(),
            })
    }

    /// Pushes the news of a persisted step (an approval to the waiting
    /// operator, an outcome to the operator and the agent), and says what
    /// [`Broker::apply`] did.
    async fn announce(
        &self,
        request_id: &str,
        row: &RequestRow,
        step: Step,
        witness: &Witness,
        at: Millis,
    ) -> Applied {
        match step {
            Step::Approved(pending) => self.announce_approval(request_id, row, &pending, witness),
            Step::Settled(settled) => {
                self.expiries.settled(request_id);
                let outcome = settled.outcome().state().as_str();
                self.metrics.request_settled(outcome, at - row.created_at);
                self.publish(row, settled.outcome()).await;
                Applied::Settled(settled.outcome().clone())
            }
            Step::Unchanged(_, why) => Applied::Unchanged(why),
        }
    }

    /// An Allow counted, more still needed: the waiting operator is told
    /// who gave it. A reuse that waits for the local Allow is no
    /// recipient's approval: its caller tells the operator.
    fn announce_approval(
        &self,
        request_id: &str,
        row: &RequestRow,
        pending: &PendingRequest,
        witness: &Witness,
    ) -> Applied {
        let approvals = u32::try_from(pending.approvals.len()).unwrap_or(u32::MAX);
        let required = pending.required_approvals;
        let reusing = row.reused_from.is_none() && pending.reused.is_some();
        if !reusing {
            let by = witness.shown_name();
            let news = ServerToOperator::Approval {
                approvals,
                required,
                by,
            };
            self.waiters.tell(request_id, news);
        }
        Applied::Approved {
            approvals,
            required,
        }
    }
}
