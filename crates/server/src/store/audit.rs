//! The audit trail: one row per event, written in the transaction of what
//! it records wherever there is one.

use super::{Millis, Store, StoreError};
use doorman_core::AuditKind;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

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
    pub async fn record(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, event).await
    }

    pub async fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, event, request_id, computer, actor, address, user_agent, detail
             FROM audit_events ORDER BY id",
        )
        .fetch_all(&self.pool)
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
                })
            })
            .collect()
    }
}

pub(super) async fn insert_audit(
    conn: &mut AnyConnection,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, event, request_id, computer, actor, address, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.at)
    .bind(event.event.as_str())
    .bind(&event.request_id)
    .bind(&event.computer)
    .bind(&event.actor)
    .bind(&event.address)
    .bind(&event.user_agent)
    .bind(&event.detail)
    .execute(conn)
    .await?;
    Ok(())
}
