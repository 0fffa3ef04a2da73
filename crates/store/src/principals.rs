//! Operators and agents: their ids, their secrets' hashes, added, listed,
//! replaced and removed; a revocation cancels what was pending with the old
//! secret, and a removal deletes what the operator or agent had.
//!
//! An operator or agent is its id, never its name: ids are never handed out
//! twice, and grants, blocks, requests and recordings belong to the id, so
//! that a name removed and added again is someone new who inherits nothing.

use super::transitions::{cancel_in, end_reuse_in};
use super::{
    AuditEvent, Millis, REQUEST_COLUMNS, Store, StoreError, insert_audit, request_from_row,
    unique_violation,
};
use crate::lite::Conn;
use doorman_core::{AuditKind, CancelCause, Revoked};
use sqlx::Row;
use sqlx::any::AnyRow;

/// An operator's id: never given to another operator, even one added later
/// under the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct OperatorId(pub i64);

/// A computer's (its agent's) id: never given to another computer, even one
/// added later under the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ComputerId(pub i64);

/// The operator a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorIdentity {
    pub id: OperatorId,
    pub name: String,
}

/// A registered agent: its id and the hash of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentKey {
    pub id: ComputerId,
    pub key_hash: Vec<u8>,
}

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

    /// The column of `requests` and `blocks` holding this principal's id.
    fn id_column(self) -> &'static str {
        match self {
            Principal::Operator => "operator_id",
            Principal::Agent => "computer_id",
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
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("created_at")?)))
            .collect()
    }

    /// Replaces an operator's token or an agent's key with `replacement`,
    /// or removes the operator or agent (`None`). Either way the old secret
    /// is dead, and so is every request still pending with it (made by that
    /// operator, or to that computer): they are cancelled, and the reuse
    /// windows of its approvals end, in the same transaction. A removal also
    /// deletes what it had: an operator's grants, and the blocks naming the
    /// operator or computer. Returns how many requests were cancelled.
    pub async fn revoke(
        &self,
        kind: Principal,
        name: &str,
        replacement: Option<&[u8]>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(id) = id_in(&mut tx, kind, name).await? else {
            return Err(StoreError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        };
        let detail = match replacement {
            Some(hash) => {
                let sql = format!(
                    "UPDATE {} SET {} = $1 WHERE id = $2",
                    kind.table(),
                    kind.hash_column()
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(hash)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                format!("the {} {name:?} was replaced", kind.as_str())
            }
            None => {
                let sql = format!("DELETE FROM {} WHERE id = $1", kind.table());
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let (grants, blocks) = forget_in(&mut tx, kind, id).await?;
                match kind {
                    Principal::Operator => format!(
                        "the operator {name:?} was removed with its {grants} grant(s) and {blocks} block(s)"
                    ),
                    Principal::Agent => {
                        format!("the agent {name:?} was removed with its {blocks} block(s)")
                    }
                }
            }
        };
        let event = match (kind, replacement) {
            (Principal::Operator, Some(_)) => AuditKind::OperatorReplaced,
            (Principal::Operator, None) => AuditKind::OperatorRemoved,
            (Principal::Agent, Some(_)) => AuditKind::AgentReplaced,
            (Principal::Agent, None) => AuditKind::AgentRemoved,
        };
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.{} = $1 AND r.state = 'pending'",
            kind.id_column()
        );
        let pending = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let what_went = match kind {
            Principal::Operator => Revoked::OperatorToken,
            Principal::Agent => Revoked::Computer,
        };
        end_reuse_in(&mut tx, kind.id_column(), id).await?;
        let cancelled = cancel_in(
            &mut tx,
            pending,
            CancelCause::Revoked { what: what_went },
            now,
        )
        .await?;
        let event = AuditEvent::new(event, now).actor(name).detail(detail);
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// The operator whose token has this hash.
    pub async fn operator_by_token(
        &self,
        hash: &[u8],
    ) -> Result<Option<OperatorIdentity>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM operators WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.map(|row| {
            Ok(OperatorIdentity {
                id: OperatorId(row.try_get("id")?),
                name: row.try_get("name")?,
            })
        })
        .transpose()
    }

    /// The name of the operator whose token has this hash.
    pub async fn operator_by_token_hash(&self, hash: &[u8]) -> Result<Option<String>, StoreError> {
        Ok(self.operator_by_token(hash).await?.map(|found| found.name))
    }

    /// The id of the operator named `name` now.
    pub async fn operator_id(&self, name: &str) -> Result<Option<OperatorId>, StoreError> {
        let mut conn = self.reader().await?;
        Ok(id_in(&mut conn, Principal::Operator, name)
            .await?
            .map(OperatorId))
    }

    /// The agent named `name` now: its id and its key's hash.
    pub async fn agent_key(&self, name: &str) -> Result<Option<AgentKey>, StoreError> {
        let row = sqlx::query("SELECT id, key_hash FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.map(|row| agent_key_from_row(&row)).transpose()
    }

    /// The stored key hash of an agent.
    pub async fn agent_key_hash(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.agent_key(name).await?.map(|agent| agent.key_hash))
    }

    /// The id of the computer named `name` now.
    pub async fn computer_id(&self, name: &str) -> Result<Option<ComputerId>, StoreError> {
        Ok(self.agent_key(name).await?.map(|agent| agent.id))
    }
}

fn agent_key_from_row(row: &AnyRow) -> Result<AgentKey, StoreError> {
    Ok(AgentKey {
        id: ComputerId(row.try_get("id")?),
        key_hash: row.try_get("key_hash")?,
    })
}

/// The id of the operator or agent named `name` now.
async fn id_in(conn: &mut Conn, kind: Principal, name: &str) -> Result<Option<i64>, StoreError> {
    let sql = format!("SELECT id FROM {} WHERE name = $1", kind.table());
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| row.try_get("id")).transpose()?)
}

/// Deletes what a removed operator or agent had: an operator's grants, and
/// the blocks naming it. Returns how many grants and blocks went.
async fn forget_in(conn: &mut Conn, kind: Principal, id: i64) -> Result<(u64, u64), StoreError> {
    let grants = match kind {
        Principal::Operator => sqlx::query("DELETE FROM grants WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        Principal::Agent => 0,
    };
    let sql = format!("DELETE FROM blocks WHERE {} = $1", kind.id_column());
    let blocks = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok((grants, blocks))
}

/// Inserts a named secret's hash and audits it; the new id (never one
/// given before). A taken name is [`StoreError::AlreadyExists`].
pub(super) async fn insert_principal_in(
    conn: &mut Conn,
    kind: Principal,
    name: &str,
    hash: &[u8],
    now: Millis,
) -> Result<i64, StoreError> {
    let sql = format!(
        "INSERT INTO {} (name, {}, created_at) VALUES ($1, $2, $3) RETURNING id",
        kind.table(),
        kind.hash_column()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(hash)
        .bind(now)
        .fetch_one(&mut *conn)
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
    let id: i64 = row.try_get("id")?;
    let event = match kind {
        Principal::Operator => AuditKind::OperatorAdded,
        Principal::Agent => AuditKind::AgentAdded,
    };
    insert_audit(conn, &AuditEvent::new(event, now).actor(name)).await?;
    Ok(id)
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
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(sqlx::Row::try_get(&row, "last")?)
    }
}
