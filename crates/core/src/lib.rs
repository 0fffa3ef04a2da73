//! Doorman's authorization domain: the life of an authorization request, the
//! decisions recipients make, the agent's settings and their validation,
//! and the invitation a computer joins with ([`join`]).
//!
//! Pure: nothing here touches the network, the disk or the clock. Callers pass
//! the time in, which keeps every rule testable with plain values.
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
