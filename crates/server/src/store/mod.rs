//! The database: operators, agents, requests with their recipients' token
//! hashes, the outbox, sessions and the audit trail; access rules in
//! [`access`], a request's transitions in [`requests`].
//!
//! Every state change is one statement or one transaction. A request's
//! transition (computed by `doorman_core::authorization`) is persisted with
//! one conditional `UPDATE … WHERE state = 'pending' AND approval_count = N`
//! that also checks the expiry time, so two clicks in the same millisecond,
//! or a click after expiry, can never both win.

mod access;
pub mod requests;

pub use access::GrantRow;
pub use requests::Block;

use doorman_core::authorization::{Approval, PendingRequest, SettledRequest};
use doorman_core::{AuditKind, CancelCause, LocalConsent, Outcome, Request, RequestState, Revoked};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool};
use sqlx::{Executor, Row};
use std::str::FromStr;

pub use doorman_core::authorization::Millis;

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
    #[error("request {0} kept changing while it was being updated; try again")]
    Contended(String),
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

    /// The migrations up to `version` (all with `i64::MAX`).
    fn migrator(self, version: i64) -> Migrator {
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
                        include_str!(concat!("../../migrations/", $dir, "/0001_initial.sql")),
                    ),
                    migration(
                        2,
                        "blocks",
                        include_str!(concat!("../../migrations/", $dir, "/0002_blocks.sql")),
                    ),
                    migration(
                        3,
                        "request service",
                        include_str!(concat!(
                            "../../migrations/",
                            $dir,
                            "/0003_request_service.sql"
                        )),
                    ),
                    migration(
                        4,
                        "server identity",
                        include_str!(concat!(
                            "../../migrations/",
                            $dir,
                            "/0004_server_identity.sql"
                        )),
                    ),
                    migration(
                        5,
                        "access and policies",
                        include_str!(concat!(
                            "../../migrations/",
                            $dir,
                            "/0005_access_and_policies.sql"
                        )),
                    ),
                ]
            };
        }
        let migrations = match self {
            Backend::Sqlite => versions!("sqlite"),
            Backend::Postgres => versions!("postgres"),
        };
        Migrator::with_migrations(
            migrations
                .into_iter()
                .filter(|m| m.version <= version)
                .collect(),
        )
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
    pub required_approvals: u32,
    /// Distinct Allows counted; the version each transition checks.
    pub approval_count: i64,
    pub cancel_cause: Option<CancelCause>,
    /// Seconds an Allow of this request covers further sessions.
    pub approval_valid_for: u32,
    /// Until when it does (cleared by a Deny on the computer or a revocation).
    pub reusable_until: Option<Millis>,
    /// The earlier request whose approval let this one in.
    pub reused_from: Option<String>,
    /// The session's time limit in seconds (0: none).
    pub max_session_seconds: u32,
    pub local_consent: LocalConsent,
    /// The local Allow, once given.
    pub local_approval: Option<Approval>,
}

impl RequestRow {
    /// The outcome of a settled request.
    pub fn outcome(&self) -> Option<Outcome> {
        let at = self.settled_at.unwrap_or(self.expires_at);
        let by = self.decided_by.clone().unwrap_or_default();
        match self.state {
            RequestState::Pending => None,
            RequestState::Allowed => Some(Outcome::Allowed {
                by,
                at,
                reused_from: self.reused_from.clone(),
            }),
            RequestState::Denied => Some(Outcome::Denied { by, at }),
            RequestState::Expired => Some(Outcome::Expired { at }),
            RequestState::Cancelled => Some(Outcome::Cancelled {
                at,
                cause: self.cancel_cause.clone().unwrap_or_default(),
            }),
        }
    }

    /// The request as the state machine sees it, with its counted Allows.
    pub fn machine(&self, approvals: Vec<Approval>) -> Request {
        let pending = PendingRequest {
            created_at: self.created_at,
            expires_at: self.expires_at,
            required_approvals: self.required_approvals.max(1),
            approvals,
            local_consent: self.local_consent,
            local_approval: self.local_approval.clone(),
        };
        match self.outcome() {
            None => Request::Pending(pending),
            Some(outcome) => Request::Settled(SettledRequest::stored(pending, outcome)),
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
    pub required_approvals: u32,
    pub approval_valid_for: u32,
    pub max_session_seconds: u32,
    pub local_consent: LocalConsent,
    pub recipients: Vec<(String, [u8; 32])>,
}

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

/// An email due for delivery.
#[derive(Clone, Debug)]
pub struct OutboxJob {
    pub request: RequestRow,
    pub position: i64,
    pub address: String,
    pub attempts: i64,
}

/// The columns of `requests r`, in the order `request_from_row` reads them by name.
const REQUEST_COLUMNS: &str = "r.id, r.computer, r.operator, r.operator_ip, r.reason, r.service, r.state, r.created_at, r.expires_at, r.settled_at, r.decided_by, r.service_json, r.required_approvals, r.approval_count, r.cancel_cause, r.approval_valid_for, r.reusable_until, r.reused_from, r.max_session_seconds, r.local_consent, r.local_approved_by, r.local_approved_at";

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
        required_approvals: seconds(row, "required_approvals")?,
        approval_count: row.try_get("approval_count")?,
        approval_valid_for: seconds(row, "approval_valid_for")?,
        reusable_until: row.try_get("reusable_until")?,
        reused_from: row.try_get("reused_from")?,
        max_session_seconds: seconds(row, "max_session_seconds")?,
        local_consent: row
            .try_get::<String, _>("local_consent")?
            .parse()
            .map_err(StoreError::Corrupt)?,
        local_approval: match (
            row.try_get::<Option<String>, _>("local_approved_by")?,
            row.try_get::<Option<i64>, _>("local_approved_at")?,
        ) {
            (Some(by), Some(at)) => Some(Approval { by, at }),
            _ => None,
        },
        cancel_cause: row
            .try_get::<Option<String>, _>("cancel_cause")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("cancel_cause: {e}")))?,
    })
}

/// A non-negative count (seconds, approvals) stored as an integer.
fn seconds(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    u32::try_from(row.try_get::<i64, _>(column)?)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        Self::open_migrated_to(database_url, i64::MAX).await
    }

    /// Opens the database migrated only up to `version`: what an older
    /// release left, for upgrade tests.
    #[doc(hidden)]
    pub async fn open_migrated_to(database_url: &str, version: i64) -> Result<Self, StoreError> {
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
        backend.migrator(version).run(&pool).await?;
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
        let mut tx = self.pool.begin().await?;
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
        requests::end_reuse_in(&mut tx, kind.request_column(), name).await?;
        let cancelled = requests::cancel_in(
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
                (AuditKind::EmailSent, None)
            }
            Err((error, Some(retry_at))) => {
                sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE request_id = $3 AND position = $4")
                    .bind(retry_at)
                    .bind(error)
                    .bind(&job.request.id)
                    .bind(job.position)
                    .execute(&mut *tx)
                    .await?;
                (AuditKind::EmailRetrying, Some(error.clone()))
            }
            Err((error, None)) => {
                sqlx::query("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1 WHERE request_id = $2 AND position = $3")
                    .bind(error)
                    .bind(&job.request.id)
                    .bind(job.position)
                    .execute(&mut *tx)
                    .await?;
                (AuditKind::EmailFailed, Some(error.clone()))
            }
        };
        insert_audit(
            &mut tx,
            &AuditEvent {
                detail,
                ..AuditEvent::new(event, now)
                    .request(&job.request.id, &job.request.computer)
                    .actor(&job.address)
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

    pub async fn end_session(&self, id: i64, now: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Inserts a named secret's hash and audits it; a taken name is
/// [`StoreError::AlreadyExists`].
async fn insert_principal_in(
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

async fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
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
