//! Operators and agents: their secrets' hashes, added, listed, replaced and
//! removed; a revocation cancels what was pending with the old secret.

use super::transitions::{cancel_in, end_reuse_in};
use super::{
    AuditEvent, Millis, REQUEST_COLUMNS, Store, StoreError, insert_audit, request_from_row,
    unique_violation,
};
use doorman_core::{AuditKind, CancelCause, Revoked};
use sqlx::{AnyConnection, Row};

/// Who holds a secret: an operator (its token) or an agent (its key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Agent,
}

impl Principal {
    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Operator => "operator",
            Principal::Agent => "agent",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Principal::Operator => "operators",
            Principal::Agent => "agents",
        }
    }

    fn hash_column(self) -> &'static str {
        match self {
            Principal::Operator => "token_hash",
            Principal::Agent => "key_hash",
        }
    }

    /// The column of `requests` naming this principal.
    fn request_column(self) -> &'static str {
        match self {
            Principal::Operator => "operator",
            Principal::Agent => "computer",
        }
    }
}

impl Store {
    pub async fn add_operator(
        &self,
        name: &str,
        token_hash: &[u8],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.add_principal(Principal::Operator, name, token_hash, now)
            .await
    }

    pub async fn add_agent(
        &self,
        name: &str,
        key_hash: &[u8],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.add_principal(Principal::Agent, name, key_hash, now)
            .await
    }

    /// Inserts a named secret's hash; a taken name is [`StoreError::AlreadyExists`].
    pub async fn add_principal(
        &self,
        kind: Principal,
        name: &str,
        hash: &[u8],
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_principal_in(&mut tx, kind, name, hash, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The registered operators or agents, by name, with when each was added.
    pub async fn principals(&self, kind: Principal) -> Result<Vec<(String, Millis)>, StoreError> {
        let sql = format!(
            "SELECT name, created_at FROM {} ORDER BY name",
            kind.table()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("created_at")?)))
            .collect()
    }

    /// Replaces an operator's token or an agent's key with `replacement`,
    /// or removes the operator or agent (`None`). Either way the old secret
    /// is dead, and so is every request still pending with it (made by that
    /// operator, or to that computer): they are cancelled, in the same
    /// transaction. Returns how many were.
    pub async fn revoke(
        &self,
        kind: Principal,
        name: &str,
        replacement: Option<&[u8]>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = match replacement {
            Some(hash) => {
                let sql = format!(
                    "UPDATE {} SET {} = $1 WHERE name = $2",
                    kind.table(),
                    kind.hash_column()
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(hash)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
            }
            None => {
                let sql = format!("DELETE FROM {} WHERE name = $1", kind.table());
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
            }
        };
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        }
        let (what, event) = match (kind, replacement) {
            (Principal::Operator, Some(_)) => ("replaced", AuditKind::OperatorReplaced),
            (Principal::Operator, None) => ("removed", AuditKind::OperatorRemoved),
            (Principal::Agent, Some(_)) => ("replaced", AuditKind::AgentReplaced),
            (Principal::Agent, None) => ("removed", AuditKind::AgentRemoved),
        };
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.{} = $1 AND r.state = 'pending'",
            kind.request_column()
        );
        let pending = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let what_went = match kind {
            Principal::Operator => Revoked::OperatorToken,
            Principal::Agent => Revoked::Computer,
        };
        end_reuse_in(&mut tx, kind.request_column(), name).await?;
        let cancelled = cancel_in(
            &mut tx,
            pending,
            CancelCause::Revoked { what: what_went },
            now,
        )
        .await?;
        let event = AuditEvent::new(event, now)
            .actor(name)
            .detail(format!("the {} {name:?} was {what}", kind.as_str()));
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// The operator whose token has this hash.
    pub async fn operator_by_token_hash(&self, hash: &[u8]) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT name FROM operators WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("name")).transpose()?)
    }

    /// The stored key hash of an agent.
    pub async fn agent_key_hash(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT key_hash FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("key_hash")).transpose()?)
    }
}

/// Inserts a named secret's hash and audits it; a taken name is
/// [`StoreError::AlreadyExists`].
pub(super) async fn insert_principal_in(
    conn: &mut AnyConnection,
    kind: Principal,
    name: &str,
    hash: &[u8],
    now: Millis,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO {} (name, {}, created_at) VALUES ($1, $2, $3)",
        kind.table(),
        kind.hash_column()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(hash)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: kind.as_str(),
                    name: name.to_string(),
                }
            } else {
                e.into()
            }
        })?;
    let event = match kind {
        Principal::Operator => AuditKind::OperatorAdded,
        Principal::Agent => AuditKind::AgentAdded,
    };
    insert_audit(conn, &AuditEvent::new(event, now).actor(name)).await
}

impl Store {
    /// The audit id of the last agent key replaced or removed (0 if none):
    /// one cheap query tells the server whether any connected agent's key
    /// may have changed.
    pub async fn last_agent_key_change(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(id), 0) AS last FROM audit_events
             WHERE event IN ('agent_replaced', 'agent_removed')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(sqlx::Row::try_get(&row, "last")?)
    }
}
