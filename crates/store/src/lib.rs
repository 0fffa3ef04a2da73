//! The database, one module for each thing it stores, on SQLite or
//! PostgreSQL.
//!
//! The map:
//!
//! - `database`: the handle on it all ([`Store`]): opening it, write
//!   transactions, the server key's claim;
//! - `backend`: SQLite and PostgreSQL, and their migrations;
//! - `connections`, `lite`, `checkpoints`, `script`: the connections
//!   statements run on (SQLite's the store's own), the checkpoints of
//!   SQLite's log, and write transactions whose first statement decides;
//! - `principals`: operators and agents, their ids and their secrets'
//!   hashes;
//! - `access`: access rules: operators' grants, and their own addresses;
//! - `rows`, `requests`: a request as stored, created with its recipients
//!   and emails, and read back;
//! - [`transitions`]: a request's transitions, each persisted with one
//!   conditional write;
//! - `outbox`: one row per email, and each delivery attempt's result;
//! - `sessions`: one per allowed request, when it started and ended;
//! - [`recordings`]: session recordings and their compressed chunks;
//! - `audit`: the audit trail, repeats collapsed, pruned by age;
//! - [`acme`]: ACME accounts and certificates;
//! - `invitations`: computers' invitations to join, redeemed once;
//! - [`faults`]: lets a test make writes fail or stall;
//! - [`private`]: the files the server creates (0700 and 0600);
//! - `error`: what goes wrong ([`StoreError`]).
//!
//! Every state change is one statement or one transaction. A request's
//! transition (computed by `doorman_core::authorization`) is persisted with
//! one conditional `UPDATE … WHERE state = 'pending' AND approval_count = N`
//! that also checks the expiry time, so two clicks in the same millisecond,
//! or a click after expiry, can never both win.
//!
//! Operators and computers are their ids ([`OperatorId`], [`ComputerId`]),
//! never their names: what an operator or computer had belongs to its id,
//! so a name removed and added again inherits nothing. Names stay beside the
//! ids where people read them (requests, recordings, the audit trail).

#![forbid(unsafe_code)]

mod access;
pub mod acme;
mod audit;
mod backend;
mod checkpoints;
mod connections;
mod database;
mod error;
pub mod faults;
mod invitations;
mod lite;
mod outbox;
mod principals;
pub mod private;
pub mod recordings;
mod requests;
mod rows;
mod script;
mod sessions;
pub mod transitions;

pub use access::{CutSession, GrantRow, Revocation};
pub use audit::AuditEvent;
pub use backend::{Backend, shown_url, sqlite_file};
pub use faults::Faults;
pub use invitations::{JoinedFrom, Redemption};
pub use outbox::OutboxJob;
pub use principals::{AgentKey, ComputerId, OperatorId, OperatorIdentity, Principal};
pub use requests::{AdmissionCounts, BlockRow};
pub use rows::{NewRequest, RequestRow};
pub use transitions::Block;

pub use database::Store;
pub use error::{StoreError, database_errors};

use audit::{audit_statement, insert_audit};
use principals::insert_principal_in;
use rows::{REQUEST_COLUMNS, request_from_row};
use sqlx::Row;
use sqlx::any::AnyRow;

pub use doorman_core::authorization::Millis;

/// A non-negative count (seconds, approvals) stored as an integer.
fn seconds(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    u32::try_from(row.try_get::<i64, _>(column)?)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
