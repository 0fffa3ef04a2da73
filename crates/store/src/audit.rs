//! The audit trail: one row per event, written in the transaction of what
//! it records wherever there is one; repeats of a collapsing kind within a
//! minute are one row with a count, and old rows are pruned by age.

use super::{Millis, Store, StoreError};
use crate::lite::Conn;
use doorman_core::AuditKind;
use serde::Serialize;
use sqlx::Row;

/// One audit trail entry.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Millis,
    pub event: AuditKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How many times it happened (in the minute from `at`, for a kind
    /// that collapses).
    #[serde(skip_serializing_if = "is_one")]
    pub count: i64,
}

fn is_one(count: &i64) -> bool {
    *count == 1
}

impl AuditEvent {
    pub fn new(event: AuditKind, at: Millis) -> Self {
        Self {
            at,
            event,
            request_id: None,
            computer: None,
            actor: None,
            address: None,
            user_agent: None,
            detail: None,
            count: 1,
        }
    }

    /// About this request to this computer.
    pub fn request(mut self, id: &str, computer: &str) -> Self {
        self.request_id = Some(id.to_string());
        self.computer = Some(computer.to_string());
        self
    }

    pub fn computer(mut self, computer: &str) -> Self {
        self.computer = Some(computer.to_string());
        self
    }

    /// Who did it: an operator, a recipient's address, an administrator's name.
    pub fn actor(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_string());
        self
    }

    pub fn address(mut self, address: &str) -> Self {
        self.address = Some(address.to_string());
        self
    }

    pub fn user_agent(mut self, user_agent: Option<String>) -> Self {
        self.user_agent = user_agent;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl Store {
    /// Records `event`; one of a kind that collapses adds to the count of
    /// its row for the same minute, actor, computer and address, if any.
    pub async fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.write_turn().await?;
        if event.event.collapses() {
            let minute = event.at - event.at.rem_euclid(60_000);
            let counted = sqlx::query(
                "UPDATE audit_events SET count = count + 1
                 WHERE event = $1 AND at >= $2 AND at < $3
                   AND COALESCE(actor, '') = $4 AND COALESCE(computer, '') = $5
                   AND COALESCE(address, '') = $6",
            )
            .bind(event.event.as_str())
            .bind(minute)
            .bind(minute + 60_000)
            .bind(event.actor.as_deref().unwrap_or(""))
            .bind(event.computer.as_deref().unwrap_or(""))
            .bind(event.address.as_deref().unwrap_or(""))
            .execute(&mut *conn)
            .await?;
            if counted.rows_affected() > 0 {
                return Ok(());
            }
        }
        insert_audit(&mut conn, event).await
    }

    /// Records `event` unless this actor already has one of its kind for
    /// its request (a recipient opening the same link again).
    pub async fn record_once(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO audit_events (at, event, request_id, computer, actor, address, user_agent, detail)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE NOT EXISTS (SELECT 1 FROM audit_events
                               WHERE request_id = $3 AND event = $2 AND actor = $5)",
        );
        bind_columns(query, event)
            .execute(&mut *self.write_turn().await?)
            .await?;
        Ok(())
    }

    /// Whether request `request_id` was denied through "I did not expect
    /// this", as its audit trail says (pruned with it after the retention).
    pub async fn was_reported(&self, request_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS reported FROM audit_events WHERE request_id = $1 AND event = $2 LIMIT 1",
        )
        .bind(request_id)
        .bind(AuditKind::Reported.as_str())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.is_some())
    }

    /// Deletes the events before `before`, and records that it did (with
    /// `by`); how many were deleted.
    pub async fn prune_audit(
        &self,
        before: Millis,
        by: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if pruned > 0 {
            let event = AuditEvent::new(AuditKind::AuditPruned, now)
                .actor(by)
                .detail(format!(
                    "{pruned} events before {}",
                    doorman_core::display::format_time(before)
                ));
            insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    pub async fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, event, request_id, computer, actor, address, user_agent, detail, count
             FROM audit_events ORDER BY id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|row| {
                let event: String = row.try_get("event")?;
                Ok(AuditEvent {
                    at: row.try_get("at")?,
                    event: event.parse().map_err(StoreError::Corrupt)?,
                    request_id: row.try_get("request_id")?,
                    computer: row.try_get("computer")?,
                    actor: row.try_get("actor")?,
                    address: row.try_get("address")?,
                    user_agent: row.try_get("user_agent")?,
                    detail: row.try_get("detail")?,
                    count: row.try_get("count")?,
                })
            })
            .collect()
    }
}

pub(super) async fn insert_audit(conn: &mut Conn, event: &AuditEvent) -> Result<(), StoreError> {
    audit_statement(event).execute(conn).await?;
    Ok(())
}

/// The INSERT of `event`.
pub(super) fn audit_statement(event: &AuditEvent) -> AnyQuery<'_> {
    // A count of one is the column's default: left out, the statement also
    // suits a database migrated only as far as an older release went.
    let sql = if event.count == 1 {
        "INSERT INTO audit_events (at, event, request_id, computer, actor, address, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    } else {
        "INSERT INTO audit_events (at, event, request_id, computer, actor, address, user_agent, detail, count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    };
    let query = bind_columns(sqlx::query(sql), event);
    if event.count == 1 {
        query
    } else {
        query.bind(event.count)
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds an event's eight columns as `$1` … `$8`, in table order.
fn bind_columns<'q>(query: AnyQuery<'q>, event: &'q AuditEvent) -> AnyQuery<'q> {
    query
        .bind(event.at)
        .bind(event.event.as_str())
        .bind(&event.request_id)
        .bind(&event.computer)
        .bind(&event.actor)
        .bind(&event.address)
        .bind(&event.user_agent)
        .bind(&event.detail)
}
