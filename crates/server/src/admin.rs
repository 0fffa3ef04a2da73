//! What `doorman admin` does: register operators and agents (returning their
//! secret once), invite computers to join, list them, replace or revoke
//! their secrets, grant and revoke operators' access to computers, and read
//! the audit trail.
//!
//! Its changes are stamped with the system's wall clock
//! ([`doorman_runtime::clock::system_millis`]): `doorman admin` is a process of its
//! own, with no server clock, and keeps no deadline.

use doorman_core::access::{ComputerPattern, ServiceSet};
use doorman_core::display::counted;
use doorman_core::join::{INVITATION_PREFIX, JoinUrl, JoinUrlError};
use doorman_core::names::validate_name;
use doorman_core::settings::validate_recipient;
use doorman_runtime::clock::system_millis;
use doorman_runtime::secrets::{self, AGENT_KEY_PREFIX, OPERATOR_TOKEN_PREFIX};
use doorman_store::{AuditEvent, GrantRow, Millis, Principal, Revocation, Store, StoreError};
use std::time::Duration;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid email address: {0}")]
    InvalidEmail(String),
    #[error("name at least one computer pattern")]
    NoPatterns,
    #[error(
        "this database holds no public URL yet (the server records its own when it starts): start the server once, or pass --public-url"
    )]
    NoPublicUrl,
    #[error("invalid --public-url {0:?}: must be an http:// or https:// URL without a path")]
    PublicUrl(String),
    #[error("an invitation is valid for 1 minute to 30 days")]
    Lifetime,
    #[error("cannot make an invitation for {url}: {error}")]
    JoinUrl { url: String, error: JoinUrlError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] secrets::RandomError),
}

fn check_name(name: &str) -> Result<(), AdminError> {
    validate_name(name).map_err(|reason| AdminError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// A new secret for `kind`: an operator token or an agent key.
fn new_secret(kind: Principal) -> Result<String, AdminError> {
    let prefix = match kind {
        Principal::Operator => OPERATOR_TOKEN_PREFIX,
        Principal::Agent => AGENT_KEY_PREFIX,
    };
    Ok(secrets::new_token(prefix)?)
}

/// Registers an operator or agent; returns its secret (shown once, stored
/// as a hash).
pub async fn add(store: &Store, kind: Principal, name: &str) -> Result<String, AdminError> {
    check_name(name)?;
    let secret = new_secret(kind)?;
    store
        .add_principal(kind, name, &secrets::hash(&secret), system_millis())
        .await?;
    Ok(secret)
}

/// Registers an operator that reaches every computer for every service
/// (tests and the demo); returns its token.
pub async fn add_operator(store: &Store, name: &str) -> Result<String, AdminError> {
    let everything = NewOperator {
        computers: vec![ComputerPattern::any()],
        services: ServiceSet::ALL,
        email: None,
    };
    add_operator_with(store, name, &everything).await
}

/// What `doorman admin operator add` may set besides the name.
#[derive(Clone, Debug, Default)]
pub struct NewOperator {
    /// Computers it may reach from the start; none: nothing until granted.
    pub computers: Vec<ComputerPattern>,
    pub services: ServiceSet,
    /// Its own address, which never approves its requests.
    pub email: Option<String>,
}

/// Registers an operator with its first grants and its email address, all
/// or nothing; returns its token.
pub async fn add_operator_with(
    store: &Store,
    name: &str,
    operator: &NewOperator,
) -> Result<String, AdminError> {
    check_name(name)?;
    if let Some(email) = &operator.email {
        validate_recipient(email).map_err(AdminError::InvalidEmail)?;
    }
    let token = new_secret(Principal::Operator)?;
    store
        .add_operator_with(
            name,
            &secrets::hash(&token),
            &operator.computers,
            operator.services,
            operator.email.as_deref(),
            system_millis(),
        )
        .await?;
    Ok(token)
}

/// Sets or clears an operator's own email address.
pub async fn set_operator_email(
    store: &Store,
    name: &str,
    email: Option<&str>,
) -> Result<(), AdminError> {
    if let Some(email) = email {
        validate_recipient(email).map_err(AdminError::InvalidEmail)?;
    }
    Ok(store
        .set_operator_email(name, email, system_millis())
        .await?)
}

/// Lets an operator reach the computers `patterns` match, for `services`.
pub async fn grant(
    store: &Store,
    operator: &str,
    patterns: &[ComputerPattern],
    services: ServiceSet,
) -> Result<(), AdminError> {
    if patterns.is_empty() {
        return Err(AdminError::NoPatterns);
    }
    Ok(store
        .grant(operator, patterns, services, system_millis())
        .await?)
}

/// Takes grants away; returns how many pending requests that cancelled,
/// and the running sessions the server ends for it (within a heartbeat).
pub async fn revoke_grant(
    store: &Store,
    operator: &str,
    patterns: &[ComputerPattern],
) -> Result<Revocation, AdminError> {
    if patterns.is_empty() {
        return Err(AdminError::NoPatterns);
    }
    Ok(store
        .revoke_grant(operator, patterns, system_millis())
        .await?)
}

/// What `doorman admin access revoke` says it did, in one line: the
/// requests cancelled and each running session that ends, as `alice →
/// office-pc (shell)`.
pub fn describe_revocation(revocation: &Revocation) -> String {
    let cancelled = match revocation.cancelled {
        0 => "no pending request cancelled".to_string(),
        n => format!(
            "{} cancelled",
            counted(n, "pending request", "pending requests")
        ),
    };
    let sessions = &revocation.sessions;
    if sessions.is_empty() {
        return format!("revoked; {cancelled}; no running session is affected");
    }
    let listed: Vec<String> = sessions
        .iter()
        .map(|session| match session.service {
            Some(service) => format!("{} → {} ({service})", session.operator, session.computer),
            None => format!("{} → {}", session.operator, session.computer),
        })
        .collect();
    let verb = if sessions.len() == 1 { "ends" } else { "end" };
    format!(
        "revoked; {cancelled}; {} {verb} within a heartbeat ({} s): {}",
        counted(sessions.len(), "running session", "running sessions"),
        crate::DEFAULT_HEARTBEAT.as_secs(),
        listed.join(", ")
    )
}

/// The operators that have an email address, with it.
pub async fn operator_emails(
    store: &Store,
) -> Result<std::collections::HashMap<String, String>, AdminError> {
    Ok(store.operator_emails().await?)
}

/// Every grant, by operator and pattern.
pub async fn grants(store: &Store) -> Result<Vec<GrantRow>, AdminError> {
    Ok(store.grants().await?)
}

/// The shortest and longest an invitation may stay valid.
pub const INVITATION_LIFETIMES: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(30 * 86_400);

/// An invitation for a computer to join: the URL `doorman agent join`
/// takes (its code shown this once; only its hash is stored), and when it
/// stops working.
#[derive(Debug)]
pub struct Invitation {
    pub url: JoinUrl,
    pub expires_at: Millis,
}

/// Invites a computer to join as `name` for `valid_for`: a single-use code
/// in a URL of the server's public URL (`public_url`, or the one the server
/// recorded when it started) that pins the private CA the server presents,
/// if it does. A name an agent has already is refused.
pub async fn invite(
    store: &Store,
    name: &str,
    valid_for: Duration,
    public_url: Option<&str>,
) -> Result<Invitation, AdminError> {
    check_name(name)?;
    if !INVITATION_LIFETIMES.contains(&valid_for) {
        return Err(AdminError::Lifetime);
    }
    let recorded = store.join_details().await?;
    let (origin, ca_sha256) = match (public_url, recorded) {
        (Some(url), recorded) => {
            let url = crate::normalize_public_url(url)
                .map_err(|_| AdminError::PublicUrl(url.to_string()))?;
            (url, recorded.and_then(|(_, ca)| ca))
        }
        (None, Some((url, ca))) => (url, ca),
        (None, None) => return Err(AdminError::NoPublicUrl),
    };
    // A CA pin means nothing to plain http://.
    let ca_sha256 = ca_sha256
        .filter(|_| origin.starts_with("https://"))
        .and_then(|hex| doorman_core::join::parse_sha256(&hex));
    let code = secrets::new_token(INVITATION_PREFIX)?;
    let url = JoinUrl::new(&origin, &code, ca_sha256).map_err(|error| AdminError::JoinUrl {
        url: origin.clone(),
        error,
    })?;
    let now = system_millis();
    let lifetime = i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(lifetime);
    store
        .add_invitation(name, &secrets::hash(&code), expires_at, now)
        .await?;
    Ok(Invitation { url, expires_at })
}

/// Registers an agent; returns its key.
pub async fn add_agent(store: &Store, name: &str) -> Result<String, AdminError> {
    add(store, Principal::Agent, name).await
}

/// The registered operators or agents, by name, with when each was added.
pub async fn list(store: &Store, kind: Principal) -> Result<Vec<(String, i64)>, AdminError> {
    Ok(store.principals(kind).await?)
}

/// Gives an operator a new token or an agent a new key (returned, shown
/// once): the old one stops working, the connections made with it are
/// closed by the server within a heartbeat, and requests pending with it
/// are cancelled.
pub async fn replace_secret(
    store: &Store,
    kind: Principal,
    name: &str,
) -> Result<String, AdminError> {
    let secret = new_secret(kind)?;
    store
        .revoke(kind, name, Some(&secrets::hash(&secret)), system_millis())
        .await?;
    Ok(secret)
}

/// Removes an operator or agent, with the same effects as replacing its
/// secret; returns how many pending requests were cancelled.
pub async fn remove(store: &Store, kind: Principal, name: &str) -> Result<u64, AdminError> {
    Ok(store.revoke(kind, name, None, system_millis()).await?)
}

/// The audit trail, oldest first.
pub async fn audit(store: &Store) -> Result<Vec<AuditEvent>, AdminError> {
    Ok(store.audit_events().await?)
}

/// One line of the human audit listing.
pub fn format_audit_line(event: &AuditEvent) -> String {
    let mut line = format!(
        "{}  {:<15}",
        doorman_core::display::format_time(event.at),
        event.event
    );
    for (label, value) in [
        ("request", &event.request_id),
        ("computer", &event.computer),
        ("by", &event.actor),
        ("from", &event.address),
        ("agent", &event.user_agent),
        ("detail", &event.detail),
    ] {
        if let Some(value) = value {
            line.push_str(&format!("  {label}={value:?}"));
        }
    }
    if event.count != 1 {
        line.push_str(&format!("  times={} (within the minute)", event.count));
    }
    line
}
