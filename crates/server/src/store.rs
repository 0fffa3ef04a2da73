//! The database: operators, agents, requests with their recipients' token
//! hashes, the outbox, sessions and the audit trail.
//!
//! Every state change is one statement or one transaction. Settling a request
//! is a single conditional `UPDATE … WHERE state = 'pending'` that also checks
//! the expiry time, so two clicks in the same millisecond, or a click after
//! expiry, can never both win.

use doorman_core::{Outcome, RequestState};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool};
use sqlx::{Executor, Row};
use std::str::FromStr;

pub type Millis = i64;

/// A database failure, with the expected cases as their own variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("this request has already started its session")]
    SessionAlreadyStarted,
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://…")]
    UnsupportedDatabase(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("database holds an unexpected value: {0}")]
    Corrupt(String),
    #[error(
        "this database's links were made with another server key: give this server the same DATA_DIR/server.key as the others"
    )]
    KeyMismatch,
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

    /// The column of `requests` naming this principal.
    fn request_column(self) -> &'static str {
        match self {
            Principal::Operator => "operator",
            Principal::Agent => "computer",
        }
    }
}

/// The database systems the store runs on; each has its own migrations, in
/// step (the same version adds the same thing to both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One server, the file in its data directory (the default).
    Sqlite,
    /// One state for several server replicas (see `server::leadership`).
    Postgres,
}

impl Backend {
    /// The backend a `--database-url` names.
    pub fn of(database_url: &str) -> Result<Self, StoreError> {
        if database_url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedDatabase(database_url.to_string()))
        }
    }

    fn migrator(self) -> Migrator {
        let migration = |version, description: &'static str, sql: &'static str| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(sql),
                false,
            )
        };
        // The same versions for both backends, each from its own directory.
        macro_rules! versions {
            ($dir:literal) => {
                vec![
                    migration(
                        1,
                        "initial",
                        include_str!(concat!("../migrations/", $dir, "/0001_initial.sql")),
                    ),
                    migration(
                        2,
                        "blocks",
                        include_str!(concat!("../migrations/", $dir, "/0002_blocks.sql")),
                    ),
                    migration(
                        3,
                        "request service",
                        include_str!(concat!("../migrations/", $dir, "/0003_request_service.sql")),
                    ),
                    migration(
                        4,
                        "server identity",
                        include_str!(concat!("../migrations/", $dir, "/0004_server_identity.sql")),
                    ),
                ]
            };
        }
        let migrations = match self {
            Backend::Sqlite => versions!("sqlite"),
            Backend::Postgres => versions!("postgres"),
        };
        Migrator::with_migrations(migrations)
    }
}

/// SQLite's URL with `mode=rwc` (create the file if missing) unless it says
/// otherwise.
fn sqlite_url_creating(database_url: &str) -> String {
    if database_url.contains("mode=") {
        database_url.to_string()
    } else if database_url.contains('?') {
        format!("{database_url}&mode=rwc")
    } else {
        format!("{database_url}?mode=rwc")
    }
}

/// A cheap-to-clone handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

/// A request as stored.
#[derive(Clone, Debug)]
pub struct RequestRow {
    pub id: String,
    pub computer: String,
    pub operator: String,
    pub operator_ip: String,
    pub reason: String,
    pub service: String,
    pub state: RequestState,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub settled_at: Option<Millis>,
    pub decided_by: Option<String>,
    /// The service asked for, as wire JSON (absent on rows from before it was kept).
    pub service_json: Option<String>,
}

impl RequestRow {
    /// The outcome of a settled request.
    pub fn outcome(&self) -> Option<Outcome> {
        let at = self.settled_at.unwrap_or(self.expires_at);
        let by = self.decided_by.clone().unwrap_or_default();
        match self.state {
            RequestState::Pending => None,
            RequestState::Allowed => Some(Outcome::Allowed { by, at }),
            RequestState::Denied => Some(Outcome::Denied { by, at }),
            RequestState::Expired => Some(Outcome::Expired { at }),
            RequestState::Cancelled => Some(Outcome::Cancelled { at }),
        }
    }
}

/// A new request, its recipients with their token hashes.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub id: String,
    pub computer: String,
    pub operator: String,
    pub operator_ip: String,
    pub reason: String,
    pub service: String,
    pub service_json: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub recipients: Vec<(String, [u8; 32])>,
}

/// One audit trail entry.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Millis,
    pub event: String,
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

/// An email due for delivery.
#[derive(Clone, Debug)]
pub struct OutboxJob {
    pub request: RequestRow,
    pub position: i64,
    pub address: String,
    pub attempts: i64,
}

/// The columns of `requests r`, in the order `request_from_row` reads them by name.
const REQUEST_COLUMNS: &str = "r.id, r.computer, r.operator, r.operator_ip, r.reason, r.service, r.state, r.created_at, r.expires_at, r.settled_at, r.decided_by, r.service_json";

fn request_from_row(row: &AnyRow) -> Result<RequestRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(RequestRow {
        id: row.try_get("id")?,
        computer: row.try_get("computer")?,
        operator: row.try_get("operator")?,
        operator_ip: row.try_get("operator_ip")?,
        reason: row.try_get("reason")?,
        service: row.try_get("service")?,
        state: RequestState::from_str(&state).map_err(StoreError::Corrupt)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        settled_at: row.try_get("settled_at")?,
        decided_by: row.try_get("decided_by")?,
        service_json: row.try_get("service_json")?,
    })
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(database_url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL with NORMAL never corrupts the database; a power
                            // cut may lose the last commits, which the expiry check
                            // makes harmless (a lost decision leaves the request
                            // pending, never allowed).
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&sqlite_url_creating(database_url))
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .connect(database_url)
                    .await?
            }
        };
        backend.migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    /// Records `fingerprint` as the server key's if the database has none
    /// yet; [`StoreError::KeyMismatch`] if it has another.
    pub async fn claim_key(&self, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO server_identity (id, key_fingerprint) VALUES (1, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT key_fingerprint FROM server_identity WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let known: String = row.try_get("key_fingerprint")?;
        if crate::secrets::constant_time_eq(&known, fingerprint) {
            Ok(())
        } else {
            Err(StoreError::KeyMismatch)
        }
    }

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
        let sql = format!(
            "INSERT INTO {} (name, {}, created_at) VALUES ($1, $2, $3)",
            kind.table(),
            kind.hash_column()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(hash)
            .bind(now)
            .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
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
        let what = match replacement {
            Some(_) => "replaced",
            None => "removed",
        };
        let detail = format!("the {} {name:?} was {what}", kind.as_str());
        let sql = format!(
            "SELECT id, computer FROM requests WHERE {} = $1 AND state = 'pending'",
            kind.request_column()
        );
        let pending = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for row in &pending {
            let id: String = row.try_get("id")?;
            let computer: String = row.try_get("computer")?;
            sqlx::query(
                "UPDATE requests SET state = 'cancelled', settled_at = $1
                 WHERE id = $2 AND state = 'pending'",
            )
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE outbox SET state = 'dropped' WHERE request_id = $1 AND state = 'queued'",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            let cancelled = AuditEvent {
                at: now,
                event: "cancelled".into(),
                request_id: Some(id),
                computer: Some(computer),
                detail: Some(detail.clone()),
                ..AuditEvent::default()
            };
            insert_audit(&mut tx, &cancelled).await?;
        }
        let event = AuditEvent {
            at: now,
            event: format!("{}_{what}", kind.as_str()),
            actor: Some(name.to_string()),
            ..AuditEvent::default()
        };
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(pending.len() as u64)
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

    /// Writes a request, its recipients, their queued emails and the audit
    /// events, all or nothing.
    pub async fn create_request(&self, request: &NewRequest) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO requests (id, computer, operator, operator_ip, reason, service, service_json, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
        )
        .bind(&request.id)
        .bind(&request.computer)
        .bind(&request.operator)
        .bind(&request.operator_ip)
        .bind(&request.reason)
        .bind(&request.service)
        .bind(&request.service_json)
        .bind(request.created_at)
        .bind(request.expires_at)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditEvent {
                at: request.created_at,
                event: "requested".into(),
                request_id: Some(request.id.clone()),
                computer: Some(request.computer.clone()),
                actor: Some(request.operator.clone()),
                address: Some(request.operator_ip.clone()),
                detail: Some(request.service.clone()),
                ..AuditEvent::default()
            },
        )
        .await?;
        for (position, (address, token_hash)) in request.recipients.iter().enumerate() {
            let position =
                i64::try_from(position).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("INSERT INTO recipients (request_id, position, address, token_hash) VALUES ($1, $2, $3, $4)")
                .bind(&request.id)
                .bind(position)
                .bind(address)
                .bind(&token_hash[..])
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO outbox (request_id, position, state, next_attempt_at) VALUES ($1, $2, 'queued', $3)")
                .bind(&request.id)
                .bind(position)
                .bind(request.created_at)
                .execute(&mut *tx)
                .await?;
            insert_audit(
                &mut tx,
                &AuditEvent {
                    at: request.created_at,
                    event: "email_queued".into(),
                    request_id: Some(request.id.clone()),
                    computer: Some(request.computer.clone()),
                    actor: Some(address.clone()),
                    ..AuditEvent::default()
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// The request and recipient address a link token's hash belongs to.
    pub async fn request_by_link(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(RequestRow, String)>, StoreError> {
        // One query on the approval page's path: the recipient and its request.
        let sql = format!(
            "SELECT {REQUEST_COLUMNS}, rc.address FROM recipients rc
             JOIN requests r ON r.id = rc.request_id WHERE rc.token_hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((request_from_row(&row)?, row.try_get("address")?)))
            .transpose()
    }

    pub async fn pending_requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.state = 'pending'");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Settles a pending request, if it still is pending at `now`, and records
    /// the audit event in the same transaction. Returns whether this call won.
    ///
    /// Allow, deny and cancel only win before `expires_at`; expire only wins
    /// from `expires_at` on. The database checks both, whatever the timers say.
    pub async fn settle(
        &self,
        id: &str,
        state: RequestState,
        decided_by: Option<&str>,
        now: Millis,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result = match state {
            RequestState::Pending => {
                return Err(StoreError::Corrupt("cannot settle to pending".into()));
            }
            RequestState::Expired => {
                sqlx::query(
                    "UPDATE requests SET state = 'expired', settled_at = expires_at
                     WHERE id = $1 AND state = 'pending' AND expires_at <= $2",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
            }
            RequestState::Allowed | RequestState::Denied | RequestState::Cancelled => {
                sqlx::query(
                    "UPDATE requests SET state = $1, settled_at = $2, decided_by = $3
                     WHERE id = $4 AND state = 'pending' AND expires_at > $5",
                )
                .bind(state.as_str())
                .bind(now)
                .bind(decided_by)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
            }
        };
        let won = result.rows_affected() == 1;
        if won {
            insert_audit(&mut tx, audit).await?;
            // Emails not yet sent are pointless now.
            sqlx::query(
                "UPDATE outbox SET state = 'dropped' WHERE request_id = $1 AND state = 'queued'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(won)
    }

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
                Ok(AuditEvent {
                    at: row.try_get("at")?,
                    event: row.try_get("event")?,
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

    /// Emails due now whose request is still pending.
    pub async fn due_emails(&self, now: Millis, limit: i64) -> Result<Vec<OutboxJob>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS}, o.position, o.attempts, rc.address
             FROM outbox o
             JOIN recipients rc ON rc.request_id = o.request_id AND rc.position = o.position
             JOIN requests r ON r.id = o.request_id
             WHERE o.state = 'queued' AND o.next_attempt_at <= $1
             ORDER BY o.next_attempt_at LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxJob {
                    request: request_from_row(row)?,
                    position: row.try_get("position")?,
                    address: row.try_get("address")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// The earliest time a queued email is due, to sleep until then.
    pub async fn next_email_due(&self) -> Result<Option<Millis>, StoreError> {
        let row =
            sqlx::query("SELECT MIN(next_attempt_at) AS due FROM outbox WHERE state = 'queued'")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("due")?)
    }

    /// Records a delivery attempt's result: `Ok` sent, `Err((error, Some(retry_at)))`
    /// to retry, `Err((error, None))` failed for good.
    pub async fn email_attempted(
        &self,
        job: &OutboxJob,
        result: Result<(), (String, Option<Millis>)>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let (event, detail) = match &result {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = $1, last_error = NULL WHERE request_id = $2 AND position = $3")
                    .bind(now)
                    .bind(&job.request.id)
                    .bind(job.position)
                    .execute(&mut *tx)
                    .await?;
                ("email_sent", None)
            }
            Err((error, Some(retry_at))) => {
                sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE request_id = $3 AND position = $4")
                    .bind(retry_at)
                    .bind(error)
                    .bind(&job.request.id)
                    .bind(job.position)
                    .execute(&mut *tx)
                    .await?;
                ("email_retrying", Some(error.clone()))
            }
            Err((error, None)) => {
                sqlx::query("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1 WHERE request_id = $2 AND position = $3")
                    .bind(error)
                    .bind(&job.request.id)
                    .bind(job.position)
                    .execute(&mut *tx)
                    .await?;
                ("email_failed", Some(error.clone()))
            }
        };
        insert_audit(
            &mut tx,
            &AuditEvent {
                at: now,
                event: event.into(),
                request_id: Some(job.request.id.clone()),
                computer: Some(job.request.computer.clone()),
                actor: Some(job.address.clone()),
                detail,
                ..AuditEvent::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts the session of a request (or of an unauthorised connection when
    /// `request_id` is `None`). A request starts at most one session.
    pub async fn start_session(
        &self,
        request_id: Option<&str>,
        computer: &str,
        operator: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO sessions (request_id, computer, operator, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(request_id)
        .bind(computer)
        .bind(operator)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::SessionAlreadyStarted
            } else {
                e.into()
            }
        })?;
        Ok(row.try_get("id")?)
    }

    /// Whether the session of this request has started (it may have ended).
    pub async fn session_started(&self, request_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS started FROM sessions WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Requests to this computer allowed since `since` whose session has not
    /// started: an agent that reconnects may still be waiting to hear of them.
    pub async fn allowed_without_session(
        &self,
        computer: &str,
        since: Millis,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.computer = $1 AND r.state = 'allowed' AND r.settled_at > $2
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.request_id = r.id)"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(computer)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// The recipient addresses of a request, in order.
    pub async fn recipients_of(&self, request_id: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT address FROM recipients WHERE request_id = $1 ORDER BY position")
                .bind(request_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| Ok(row.try_get("address")?)).collect()
    }

    /// When every email of a request failed for good: one of their errors.
    pub async fn all_emails_failed(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, COUNT(CASE WHEN state = 'failed' THEN 1 END) AS failed, MAX(last_error) AS error
             FROM outbox WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        let failed: Option<i64> = row.try_get("failed")?;
        let error: Option<String> = row.try_get("error")?;
        Ok((total > 0 && failed == Some(total)).then(|| error.unwrap_or_default()))
    }

    /// Requests of this operator still pending at `now`.
    pub async fn pending_of_operator(
        &self,
        operator: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM requests WHERE operator = $1 AND state = 'pending' AND expires_at > $2";
        self.count(sql, operator, now).await
    }

    /// A `COUNT(*) AS n` query with a name and a time bound.
    async fn count(&self, sql: &'static str, name: &str, time: Millis) -> Result<i64, StoreError> {
        let row = sqlx::query(sql)
            .bind(name)
            .bind(time)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Requests made to this computer since `since`.
    pub async fn requests_to_computer_since(
        &self,
        computer: &str,
        since: Millis,
    ) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM requests WHERE computer = $1 AND created_at > $2";
        self.count(sql, computer, since).await
    }

    /// Blocks `operator` from asking `computer` until `until`.
    pub async fn block(
        &self,
        operator: &str,
        computer: &str,
        until: Millis,
        reported_by: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO blocks (operator, computer, until, reported_by, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (operator, computer) DO UPDATE SET until = CASE WHEN excluded.until > blocks.until THEN excluded.until ELSE blocks.until END,
                 reported_by = excluded.reported_by, created_at = excluded.created_at",
        )
        .bind(operator)
        .bind(computer)
        .bind(until)
        .bind(reported_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Until when `operator` may not ask `computer`, if blocked at `now`.
    pub async fn blocked_until(
        &self,
        operator: &str,
        computer: &str,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT until FROM blocks WHERE operator = $1 AND computer = $2 AND until > $3",
        )
        .bind(operator)
        .bind(computer)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("until")).transpose()?)
    }

    /// Pending requests to a computer.
    pub async fn pending_for_computer(
        &self,
        computer: &str,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.computer = $1 AND r.state = 'pending'"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(computer)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    pub async fn end_session(&self, id: i64, now: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (at, event, request_id, computer, actor, address, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.at)
    .bind(&event.event)
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
