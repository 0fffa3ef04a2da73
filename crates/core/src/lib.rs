//! Doorman's authorization domain: the life of an authorization request, the
//! decisions recipients make, the agent's settings and their validation,
//! and the invitation a computer joins with ([`join`]).
//!
//! Pure: nothing here touches the network, the disk or the clock. Callers pass
//! the time in, which keeps every rule testable with plain values.
//!
//! The map:
//!
//! - [`authorization`]: the life of one authorization request, the one
//!   place its rules live;
//! - [`access`]: access rules: which operator may reach which computers,
//!   for which services;
//! - [`settings`]: the agent's settings file: its shape, its validation,
//!   and edits that keep the owner's comments and layout;
//! - [`passkey`]: passkey approvals the computer checks itself: the
//!   challenge, the assertion verified, a new credential read;
//! - [`join`]: a computer joining with an invitation: the URL, the
//!   server's answer, and the settings file the computer starts with;
//! - [`audit`]: the kinds of event the audit trail records;
//! - [`names`]: what a computer or operator name may be;
//! - [`limits`]: size limits shared by the server, the agent and the
//!   client, so that all refuse the same inputs with the same words;
//! - [`display`]: text from outside shown to people with nothing hidden,
//!   counts with their nouns, times in UTC;
//! - [`mask`]: recipient addresses masked for operators;
//! - [`secret`]: a secret that `Debug` and `Display` never show.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod authorization;
pub mod display;
pub mod join;
pub mod limits;
pub mod mask;
pub mod names;
pub mod passkey;
pub mod secret;
pub mod settings;

pub use audit::AuditKind;
pub use authorization::{
    CancelCause, Decision, Event, LocalConsent, Outcome, PendingRequest, Request, RequestState,
    Revoked, Step,
};
pub use secret::Secret;
pub use settings::{AgentSettings, SettingsChange, SettingsProblem};
