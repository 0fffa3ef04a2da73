//! Access rules in the database: operators' grants (computer patterns and
//! services, kept by the operator's id and deleted with it), operators' own
//! email addresses, and the notices an upgrade leaves for the server's log.

use super::transitions::cancel_in;
use super::{
    AuditEvent, Millis, OperatorId, Principal, REQUEST_COLUMNS, Store, StoreError, insert_audit,
    insert_principal_in, request_from_row,
};
use crate::lite::Conn;
use doorman_core::access::{ComputerPattern, Grant, ServiceKind, ServiceSet, permits};
use doorman_core::{AuditKind, CancelCause, Revoked};
use doorman_wire::message::Service;
use sqlx::Row;

/// One grant, with its operator, as `doorman admin access list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub operator: String,
    pub grant: Grant,
    pub created_at: Millis,
}

/// The id of the operator named `operator` now; [`StoreError::NotFound`]
/// if there is none.
async fn operator_id_in(conn: &mut Conn, operator: &str) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT id FROM operators WHERE name = $1")
        .bind(operator)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(row) => Ok(row.try_get("id")?),
        None => Err(StoreError::NotFound {
            kind: "operator",
            name: operator.to_string(),
        }),
    }
}

/// Grants with their operator's name, as [`grant_from_row`] reads them;
/// a `WHERE` or `ORDER BY` may follow.
const GRANT_COLUMNS: &str = "SELECT o.name AS operator, g.computers AS computers, g.services AS services, g.created_at AS created_at
     FROM grants g JOIN operators o ON o.id = g.operator_id";

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

/// What `doorman admin access revoke` did: the pending requests it
/// cancelled, and the running sessions the server ends for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocation {
    pub cancelled: u64,
    pub sessions: Vec<CutSession>,
}

/// A running session whose operator no longer reaches its computer for
/// its service: the server ends it within a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutSession {
    pub operator: String,
    pub computer: String,
    /// Its service; `None` for a session no request was made for (email
    /// authorization off), whose service is not recorded: such a session
    /// is listed only when the computer is out of reach for every service.
    pub service: Option<ServiceKind>,
}

/// The running sessions of the operator named `operator` that its
/// `remaining` grants no longer cover, as the sessions table knows them
/// (a row a server stopped by `kill -9` left open counts too).
async fn sessions_cut_in(
    conn: &mut Conn,
    operator: &str,
    remaining: &[Grant],
) -> Result<Vec<CutSession>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.computer AS computer, r.service_json AS service_json
         FROM sessions s LEFT JOIN requests r ON r.id = s.request_id
         WHERE s.operator = $1 AND s.ended_at IS NULL ORDER BY s.started_at, s.id",
    )
    .bind(operator)
    .fetch_all(conn)
    .await?;
    let mut cut = Vec::new();
    for row in &rows {
        let computer: String = row.try_get("computer")?;
        let service_json: Option<String> = row.try_get("service_json")?;
        let service = service_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<Service>(json).ok())
            .map(|service| service.kind());
        let ends = match service {
            Some(kind) => !permits(remaining, &computer, kind),
            None => !ServiceKind::ALL
                .into_iter()
                .any(|kind| permits(remaining, &computer, kind)),
        };
        if ends {
            cut.push(CutSession {
                operator: operator.to_string(),
                computer,
                service,
            });
        }
    }
    Ok(cut)
}

/// The grants of the operator with this id.
async fn grants_in(conn: &mut Conn, operator: i64) -> Result<Vec<Grant>, StoreError> {
    let sql = format!("{GRANT_COLUMNS} WHERE g.operator_id = $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(operator)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| grant_from_row(row).map(|row| row.grant))
        .collect()
}

/// Grants `patterns` to the operator with id `operator_id`, named
/// `operator` in the audit trail.
async fn grant_in(
    conn: &mut Conn,
    operator_id: i64,
    operator: &str,
    patterns: &[ComputerPattern],
    services: ServiceSet,
    now: Millis,
) -> Result<(), StoreError> {
    for pattern in patterns {
        sqlx::query(
            "INSERT INTO grants (operator_id, computers, services, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (operator_id, computers) DO UPDATE SET services = excluded.services",
        )
        .bind(operator_id)
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
    conn: &mut Conn,
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
        let id = operator_id_in(&mut tx, operator).await?;
        grant_in(&mut tx, id, operator, patterns, services, now).await?;
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
        let id = insert_principal_in(&mut tx, Principal::Operator, name, token_hash, now).await?;
        grant_in(&mut tx, id, name, patterns, services, now).await?;
        if email.is_some() {
            set_email_in(&mut tx, name, email, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes grants away; the operator's pending requests to computers it no
    /// longer reaches are cancelled in the same transaction (its running
    /// sessions there end within a heartbeat). Returns how many were
    /// cancelled, and the running sessions that end.
    pub async fn revoke_grant(
        &self,
        operator: &str,
        patterns: &[ComputerPattern],
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = operator_id_in(&mut tx, operator).await?;
        for pattern in patterns {
            let deleted =
                sqlx::query("DELETE FROM grants WHERE operator_id = $1 AND computers = $2")
                    .bind(id)
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
        super::transitions::end_reuse_in(&mut tx, "operator_id", id).await?;
        let remaining = grants_in(&mut tx, id).await?;
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.operator_id = $1 AND r.state = 'pending'"
        );
        let pending = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
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
        let sessions = sessions_cut_in(&mut tx, operator, &remaining).await?;
        tx.commit().await?;
        Ok(Revocation {
            cancelled,
            sessions,
        })
    }

    /// Every grant, by operator and pattern.
    pub async fn grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        let sql = format!("{GRANT_COLUMNS} ORDER BY o.name, g.computers");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// The grants of the operator named `operator` now (none if there is no
    /// such operator).
    pub async fn grants_of(&self, operator: &str) -> Result<Vec<Grant>, StoreError> {
        let sql = format!("{GRANT_COLUMNS} WHERE o.name = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(operator)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter()
            .map(|row| grant_from_row(row).map(|row| row.grant))
            .collect()
    }

    /// The grants of the operator with this id (none once it is removed).
    pub async fn grants_of_operator(&self, operator: OperatorId) -> Result<Vec<Grant>, StoreError> {
        let mut conn = self.reader().await?;
        grants_in(&mut conn, operator.0).await
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
    pub async fn operator_email(&self, operator: OperatorId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT email FROM operators WHERE id = $1")
            .bind(operator.0)
            .fetch_optional(&mut *self.reader().await?)
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
            .fetch_all(&mut *self.reader().await?)
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
