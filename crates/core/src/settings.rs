//! The agent's settings file: its shape, its validation, and edits to it that
//! keep the owner's comments and layout.
//!
//! Reading and writing the file is the agent's job; this module only turns
//! text into checked settings and text plus a change into new text.

use crate::authorization::LocalConsent;
use crate::limits::{
    DEFAULT_TIMEOUT_SECS, MAX_APPROVAL_VALID_FOR_SECS, MAX_RECIPIENTS, MAX_SESSION_SECS,
    MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS,
};
use crate::names::validate_name;
use crate::secret::{AGENT_KEY_PREFIX, SECRET_CHARS, Secret, has_secret_form};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Everything the agent reads from its settings file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// The server's base URL, `http://…` or `https://…`.
    pub server: String,
    /// This computer's name, as registered with `doorman admin agent add`.
    pub name: String,
    /// The key printed by `doorman admin agent add`.
    pub key: Secret,
    /// Certificates to trust for an `https://` server instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// A shell command run for every event, with its details in `DOORMAN_*`
    /// environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_command: Option<String>,
    /// Where `doorman consent` reaches the running agent (a Unix socket);
    /// beside this file when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_socket: Option<PathBuf>,
    /// The computer's end-to-end identity key (PEM, made at the agent's
    /// first start, 0600); `identity.key` beside this file when not set,
    /// relative paths from this file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<PathBuf>,
    /// The age recipients (`age1…`) this computer seals its recordings of
    /// end-to-end shell sessions to; without any, it records only what the
    /// audit trail keeps of them, not what they showed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recordings_to: Vec<String>,
    #[serde(default)]
    pub desktop_sharing: EmailAuthorization,
    #[serde(default)]
    pub services: Services,
}

/// "Require email authorization for incoming connections", its recipients
/// and its approval policies. The file calls it `[desktop_sharing]`, as the
/// remote-desktop products it comes from do.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAuthorization {
    #[serde(default)]
    pub require_email_authorization: bool,
    /// Seconds a request waits for a decision.
    #[serde(default = "default_timeout")]
    pub email_authorization_timeout: u32,
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Distinct recipients that must Allow; one Deny vetoes.
    #[serde(default = "default_required_approvals")]
    pub required_approvals: u32,
    /// A connect without a reason is refused before any email.
    #[serde(default)]
    pub require_reason: bool,
    /// Seconds an Allow also covers the same operator's further sessions
    /// of the same service (0: every session needs its own approval).
    #[serde(default)]
    pub approval_valid_for: u32,
    /// Seconds a session may last (0: no limit).
    #[serde(default)]
    pub max_session_seconds: u32,
    /// Whether a person at the computer answers too: "off",
    /// "alternative" (a local answer settles like a recipient's) or
    /// "required" (a session needs the local Allow as well).
    #[serde(default)]
    pub local_consent: LocalConsent,
    /// Approvals count only when made with a passkey pinned below, which
    /// this computer verifies itself.
    #[serde(default)]
    pub require_passkey: bool,
    /// Passkeys pinned by `doorman settings approvers enroll`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passkeys: Vec<crate::passkey::PinnedPasskey>,
}

fn default_required_approvals() -> u32 {
    1
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_SECS
}

impl Default for EmailAuthorization {
    fn default() -> Self {
        Self {
            require_email_authorization: false,
            email_authorization_timeout: DEFAULT_TIMEOUT_SECS,
            recipients: Vec::new(),
            required_approvals: 1,
            require_reason: false,
            approval_valid_for: 0,
            max_session_seconds: 0,
            local_consent: LocalConsent::Off,
            require_passkey: false,
            passkeys: Vec::new(),
        }
    }
}

/// What an operator may reach once allowed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Remote commands and interactive shells.
    #[serde(default = "default_true")]
    pub shell: bool,
    /// `host:port` targets an operator may forward to.
    #[serde(default)]
    pub forward: Vec<String>,
    /// The VNC server (`host:port`, usually `127.0.0.1:5900`) the web
    /// console's desktop viewer reaches; no desktop when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop: Option<String>,
    /// Folders an operator may copy files to and from (`doorman cp`),
    /// absolute or under `~/`; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

fn default_true() -> bool {
    true
}

impl Default for Services {
    fn default() -> Self {
        Self {
            shell: true,
            forward: Vec::new(),
            desktop: None,
            files: Vec::new(),
        }
    }
}

impl EmailAuthorization {
    fn validate_passkeys(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        for (index, key) in self.passkeys.iter().enumerate() {
            if !self.recipients.contains(&key.recipient) {
                problems.push(SettingsProblem::new(
                    &format!("desktop_sharing.passkeys[{index}].recipient"),
                    format!("{} is not one of the recipients", key.recipient),
                ));
            }
        }
        if self.require_passkey {
            let mut with_keys: Vec<&str> =
                self.passkeys.iter().map(|k| k.recipient.as_str()).collect();
            with_keys.sort_unstable();
            with_keys.dedup();
            if !self.require_email_authorization {
                problems.push(SettingsProblem::new(
                    "desktop_sharing.require_passkey",
                    "needs require_email_authorization = true",
                ));
            } else if with_keys.len() < self.required_approvals as usize {
                problems.push(SettingsProblem::new(
                    "desktop_sharing.require_passkey",
                    format!(
                        "{} recipients have a pinned passkey, fewer than required_approvals ({}): enroll with `doorman settings approvers enroll ADDRESS`",
                        with_keys.len(),
                        self.required_approvals
                    ),
                ));
            }
        }
        problems
    }
}

/// One thing wrong with a settings file, named by its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsProblem {
    pub field: String,
    pub message: String,
}

impl SettingsProblem {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a settings text is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Not TOML of the expected shape (unknown field, wrong type, …).
    #[error("{0}")]
    Syntax(String),
    /// Well-formed but invalid; every problem is listed.
    #[error("{}", join_problems(.0))]
    Invalid(Vec<SettingsProblem>),
}

fn join_problems(problems: &[SettingsProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AgentSettings {
    /// Parses and validates a settings file's text.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let settings: AgentSettings =
            toml::from_str(text).map_err(|e| SettingsError::Syntax(one_line(&e.to_string())))?;
        let problems = settings.validate();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }

    /// Every problem with these settings, each with its field name.
    pub fn validate(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            problems.push(SettingsProblem::new(
                "server",
                "must be an http:// or https:// URL",
            ));
        }
        if let Err(message) = validate_name(&self.name) {
            problems.push(SettingsProblem::new("name", message));
        }
        if self.key.expose().trim().is_empty() {
            problems.push(SettingsProblem::new(
                "key",
                "must be set (from `doorman admin agent add`)",
            ));
        } else if !has_secret_form(self.key.expose(), AGENT_KEY_PREFIX) {
            problems.push(SettingsProblem::new(
                "key",
                format!(
                    "is not an agent key: the one `doorman admin agent add` (or `agent rotate`) printed starts with {AGENT_KEY_PREFIX} and has {SECRET_CHARS} more characters"
                ),
            ));
        }
        problems.extend(self.desktop_sharing.validate());
        problems.extend(checks::recording_problems(&self.recordings_to));
        for (index, target) in self.services.forward.iter().enumerate() {
            if let Err(message) = validate_forward_target(target) {
                problems.push(SettingsProblem::new(
                    &format!("services.forward[{index}]"),
                    message,
                ));
            }
        }
        if let Some(Err(message)) = self
            .services
            .desktop
            .as_deref()
            .map(validate_forward_target)
        {
            problems.push(SettingsProblem::new("services.desktop", message));
        }
        for (index, root) in self.services.files.iter().enumerate() {
            if let Err(message) = validate_file_root(root) {
                let field = format!("services.files[{index}]");
                problems.push(SettingsProblem::new(&field, message));
            }
        }
        problems
    }
}

impl EmailAuthorization {
    pub(crate) fn validate(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        let timeout = self.email_authorization_timeout;
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&timeout) {
            problems.push(SettingsProblem::new(
                "desktop_sharing.email_authorization_timeout",
                format!(
                    "must be between {MIN_TIMEOUT_SECS} and {MAX_TIMEOUT_SECS} seconds (got {timeout})"
                ),
            ));
        }
        if self.require_email_authorization && self.recipients.is_empty() {
            problems.push(SettingsProblem::new(
                "desktop_sharing.recipients",
                "at least one recipient is required when email authorization is on",
            ));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            problems.push(SettingsProblem::new(
                "desktop_sharing.recipients",
                format!("at most {MAX_RECIPIENTS} recipients"),
            ));
        }
        let approvals = self.required_approvals;
        let most = u32::try_from(self.recipients.len().max(1)).unwrap_or(u32::MAX);
        if approvals == 0 || approvals > most {
            problems.push(SettingsProblem::new(
                "desktop_sharing.required_approvals",
                format!(
                    "must be between 1 and the number of recipients ({most}) (got {approvals})"
                ),
            ));
        }
        if self.local_consent != LocalConsent::Off && !self.require_email_authorization {
            problems.push(SettingsProblem::new(
                "desktop_sharing.local_consent",
                "needs require_email_authorization = true (local answers settle authorization requests)",
            ));
        }
        if self.approval_valid_for > MAX_APPROVAL_VALID_FOR_SECS {
            problems.push(SettingsProblem::new(
                "desktop_sharing.approval_valid_for",
                format!(
                    "must be between 0 and {MAX_APPROVAL_VALID_FOR_SECS} seconds (got {})",
                    self.approval_valid_for
                ),
            ));
        }
        if self.max_session_seconds > MAX_SESSION_SECS {
            problems.push(SettingsProblem::new(
                "desktop_sharing.max_session_seconds",
                format!(
                    "must be between 0 (no limit) and {MAX_SESSION_SECS} seconds (got {})",
                    self.max_session_seconds
                ),
            ));
        }
        problems.extend(self.validate_passkeys());
        for (index, recipient) in self.recipients.iter().enumerate() {
            if let Err(message) = validate_recipient(recipient) {
                problems.push(SettingsProblem::new(
                    &format!("desktop_sharing.recipients[{index}]"),
                    message,
                ));
            }
        }
        problems
    }
}

/// A pinned passkey as the settings file writes it: one inline table.
fn passkey_table(key: &crate::passkey::PinnedPasskey) -> toml_edit::InlineTable {
    let (alg, public) = match &key.public_key {
        crate::passkey::PublicKey::Es256(k) => ("es256", k),
        crate::passkey::PublicKey::Ed25519(k) => ("ed25519", k),
        crate::passkey::PublicKey::Rs256(k) => ("rs256", k),
    };
    let mut public_key = toml_edit::InlineTable::new();
    public_key.insert("alg", alg.into());
    public_key.insert("key", public.to_string().into());
    let mut table = toml_edit::InlineTable::new();
    table.insert("recipient", key.recipient.as_str().into());
    table.insert("id", key.id.to_string().into());
    table.insert("public_key", toml_edit::Value::InlineTable(public_key));
    table
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A change asked for with `doorman settings set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub require_email_authorization: Option<bool>,
    pub email_authorization_timeout: Option<u32>,
    pub recipients: Option<Vec<String>>,
    pub required_approvals: Option<u32>,
    pub require_reason: Option<bool>,
    pub approval_valid_for: Option<u32>,
    pub max_session_seconds: Option<u32>,
    pub local_consent: Option<LocalConsent>,
    /// `[services] shell`.
    pub shell: Option<bool>,
    /// `[services] forward`.
    pub forward: Option<Vec<String>>,
    /// `[services] desktop`: `Some(None)` takes the desktop away.
    pub desktop: Option<Option<String>>,
    /// `[services] files`: the shared folders, all of them.
    pub files: Option<Vec<String>>,
    pub require_passkey: Option<bool>,
    /// The pinned passkeys, all of them (`settings approvers`).
    pub passkeys: Option<Vec<crate::passkey::PinnedPasskey>>,
}

impl SettingsChange {
    pub fn is_empty(&self) -> bool {
        self == &SettingsChange::default()
    }

    /// Applies the change to a settings file's text, keeping its comments and
    /// layout, and returns the new text with the settings it now holds. The
    /// result is validated as a whole: an invalid change returns every problem
    /// and no text.
    pub fn apply_to(&self, text: &str) -> Result<(String, AgentSettings), SettingsError> {
        let mut document: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| SettingsError::Syntax(one_line(&e.to_string())))?;
        let table = document
            .entry("desktop_sharing")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_like_mut()
            .ok_or_else(|| SettingsError::Syntax("desktop_sharing must be a table".into()))?;
        if let Some(on) = self.require_email_authorization {
            set_keeping_comment(table, "require_email_authorization", on.into());
        }
        if let Some(timeout) = self.email_authorization_timeout {
            let timeout = i64::from(timeout).into();
            set_keeping_comment(table, "email_authorization_timeout", timeout);
        }
        if let Some(recipients) = &self.recipients {
            let array: toml_edit::Array = recipients.iter().map(String::as_str).collect();
            set_keeping_comment(table, "recipients", array.into());
        }
        if let Some(approvals) = self.required_approvals {
            set_keeping_comment(table, "required_approvals", i64::from(approvals).into());
        }
        if let Some(on) = self.require_reason {
            set_keeping_comment(table, "require_reason", on.into());
        }
        if let Some(mode) = self.local_consent {
            set_keeping_comment(table, "local_consent", mode.as_str().into());
        }
        if let Some(on) = self.require_passkey {
            set_keeping_comment(table, "require_passkey", on.into());
        }
        if let Some(passkeys) = &self.passkeys {
            let mut array = toml_edit::Array::new();
            for key in passkeys {
                array.push(passkey_table(key));
            }
            array.set_trailing_comma(true);
            for value in array.iter_mut() {
                value.decor_mut().set_prefix("\n    ");
            }
            array.set_trailing("\n");
            set_keeping_comment(table, "passkeys", array.into());
        }
        for (key, seconds) in [
            ("approval_valid_for", self.approval_valid_for),
            ("max_session_seconds", self.max_session_seconds),
        ] {
            if let Some(seconds) = seconds {
                set_keeping_comment(table, key, i64::from(seconds).into());
            }
        }
        let services_change = [self.forward.is_some(), self.files.is_some()];
        if self.shell.is_some() || self.desktop.is_some() || services_change.contains(&true) {
            let services = document
                .entry("services")
                .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
                .as_table_like_mut()
                .ok_or_else(|| SettingsError::Syntax("services must be a table".into()))?;
            if let Some(on) = self.shell {
                set_keeping_comment(services, "shell", on.into());
            }
            if let Some(targets) = &self.forward {
                let array: toml_edit::Array = targets.iter().map(String::as_str).collect();
                set_keeping_comment(services, "forward", array.into());
            }
            if let Some(roots) = &self.files {
                let array: toml_edit::Array = roots.iter().map(String::as_str).collect();
                set_keeping_comment(services, "files", array.into());
            }
            match &self.desktop {
                Some(Some(target)) => {
                    set_keeping_comment(services, "desktop", target.as_str().into())
                }
                Some(None) => {
                    services.remove("desktop");
                }
                None => {}
            }
        }
        let new_text = document.to_string();
        let settings = AgentSettings::parse(&new_text)?;
        Ok((new_text, settings))
    }
}

/// Sets `key` to `value`, keeping the comment and spacing around the old
/// value (`timeout = 60   # seconds` stays commented).
fn set_keeping_comment(table: &mut dyn toml_edit::TableLike, key: &str, value: toml_edit::Value) {
    let mut value = value;
    if let Some(old) = table.get(key).and_then(toml_edit::Item::as_value) {
        *value.decor_mut() = old.decor().clone();
    }
    table.insert(key, toml_edit::Item::Value(value));
}

/// Splits a comma-separated list (`a@x,b@y`, `host:1,host:2`) into trimmed
/// items; an empty string means none.
pub fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

mod checks;
pub use checks::{
    MAX_RECORDING_RECIPIENTS, validate_file_root, validate_forward_target, validate_recipient,
};

#[cfg(test)]
mod tests;
