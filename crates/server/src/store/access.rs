//! Access rules in the database: operators' grants (computer patterns and
//! services), operators' own email addresses, and the notices an upgrade
//! leaves for the server's log.

use super::transitions::cancel_in;
use super::{
    AuditEvent, Millis, Principal, REQUEST_COLUMNS, Store, StoreError, insert_audit,
    insert_principal_in, request_from_row,
};
use doorman_core::access::{ComputerPattern, Grant, ServiceSet, permits};
use doorman_core::{AuditKind, CancelCause, Revoked};
use doorman_proto::message::Service;
use sqlx::{AnyConnection, Row};

/// One grant, with its operator, as `doorman admin access list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub operator: String,
    pub grant: Grant,
    pub created_at: Millis,
}

async fn operator_exists(conn: &mut AnyConnection, operator: &str) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT 1 AS found FROM operators WHERE name = $1")
        .bind(operator)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound {
            kind: "operator",
            name: operator.to_string(),
        }),
    }
}

fn grant_from_row(row: &sqlx::any::AnyRow) -> Result<GrantRow, StoreError> {
    let computers: String = row.try_get("computers")?;
    let services: String = row.try_get("services")?;
    Ok(GrantRow {
        operator: row.try_get("operator")?,
        grant: Grant {
            computers: computers.parse().map_err(StoreError::Corrupt)?,
            services: services.parse().map_err(StoreError::Corrupt)?,
        },
        created_at: row.try_get("created_at")?,
    })
}

async fn grants_in(conn: &mut AnyConnection, operator: &str) -> Result<Vec<Grant>, StoreError> {
    let rows = sqlx::query(
        "SELECT operator, computers, services, created_at FROM grants WHERE operator = $1",
    )
    .bind(operator)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| grant_from_row(row).map(|row| row.grant))
        .collect()
}

async fn grant_in(
    conn: &mut AnyConnection,
    operator: &str,
    patterns: &[ComputerPattern],
    services: ServiceSet,
    now: Millis,
) -> Result<(), StoreError> {
    for pattern in patterns {
        sqlx::query(
            "INSERT INTO grants (operator, computers, services, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (operator, computers) DO UPDATE SET services = excluded.services",
        )
        .bind(operator)
        .bind(pattern.as_str())
        .bind(services.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let event = AuditEvent::new(AuditKind::AccessGranted, now)
            .actor(operator)
            .computer(pattern.as_str())
            .detail(services.to_string());
        insert_audit(conn, &event).await?;
    }
    Ok(())
}

async fn set_email_in(
    conn: &mut AnyConnection,
    operator: &str,
    email: Option<&str>,
    now: Millis,
) -> Result<(), StoreError> {
    let changed = sqlx::query("UPDATE operators SET email = $1 WHERE name = $2")
        .bind(email)
        .bind(operator)
        .execute(&mut *conn)
        .await?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            kind: "operator",
            name: operator.to_string(),
        });
    }
    let event = AuditEvent::new(AuditKind::OperatorEmailSet, now)
        .actor(operator)
        .detail(email.unwrap_or("(none)"));
    insert_audit(conn, &event).await
}

impl Store {
    /// Lets `operator` reach the computers `patterns` match, for `services`
    /// (a pattern granted before gets these services instead).
    pub async fn grant(
        &self,
        operator: &str,
        patterns: &[ComputerPattern],
        services: ServiceSet,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        operator_exists(&mut tx, operator).await?;
        grant_in(&mut tx, operator, patterns, services, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Registers an operator with its token's hash, its first grants and
    /// its own email address, all or nothing.
    pub async fn add_operator_with(
        &self,
        name: &str,
        token_hash: &[u8],
        patterns: &[ComputerPattern],
        services: ServiceSet,
        email: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_principal_in(&mut tx, Principal::Operator, name, token_hash, now).await?;
        grant_in(&mut tx, name, patterns, services, now).await?;
        if email.is_some() {
            set_email_in(&mut tx, name, email, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes grants away; the operator's pending requests to computers it no
    /// longer reaches are cancelled in the same transaction (its running
    /// sessions there end within a heartbeat). Returns how many were.
    pub async fn revoke_grant(
        &self,
        operator: &str,
        patterns: &[ComputerPattern],
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        operator_exists(&mut tx, operator).await?;
        for pattern in patterns {
            let deleted = sqlx::query("DELETE FROM grants WHERE operator = $1 AND computers = $2")
                .bind(operator)
                .bind(pattern.as_str())
                .execute(&mut *tx)
                .await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::NotFound {
                    kind: "grant of computers",
                    name: pattern.to_string(),
                });
            }
            let event = AuditEvent::new(AuditKind::AccessRevoked, now)
                .actor(operator)
                .computer(pattern.as_str());
            insert_audit(&mut tx, &event).await?;
        }
        super::transitions::end_reuse_in(&mut tx, "operator", operator).await?;
        let remaining = grants_in(&mut tx, operator).await?;
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.operator = $1 AND r.state = 'pending'"
        );
        let pending = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(operator)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let lost = pending
            .into_iter()
            .filter(|row| {
                let kind = row
                    .service_json
                    .as_deref()
                    .and_then(|json| serde_json::from_str::<Service>(json).ok())
                    .map(|service| service.kind());
                !kind.is_some_and(|kind| permits(&remaining, &row.computer, kind))
            })
            .collect();
        let cause = CancelCause::Revoked {
            what: Revoked::Access,
        };
        let cancelled = cancel_in(&mut tx, lost, cause, now).await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// Every grant, by operator and pattern.
    pub async fn grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT operator, computers, services, created_at FROM grants ORDER BY operator, computers",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// The grants of one operator.
    pub async fn grants_of(&self, operator: &str) -> Result<Vec<Grant>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        grants_in(&mut conn, operator).await
    }

    /// Sets (or, with `None`, clears) an operator's own email address.
    pub async fn set_operator_email(
        &self,
        operator: &str,
        email: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        set_email_in(&mut tx, operator, email, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An operator's own email address, if it has one.
    pub async fn operator_email(&self, operator: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT email FROM operators WHERE name = $1")
            .bind(operator)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|row| row.try_get::<Option<String>, _>("email"))
            .transpose()?
            .flatten())
    }

    /// Every operator's email address, by operator.
    pub async fn operator_emails(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT name, email FROM operators WHERE email IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("email")?)))
            .collect()
    }

    /// The notices an upgrade left for the log; each is returned once.
    pub async fn take_upgrade_notices(&self) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query("SELECT message FROM upgrade_notices ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM upgrade_notices")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(|row| Ok(row.try_get("message")?)).collect()
    }
}
