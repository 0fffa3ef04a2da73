//! `doorman settings approvers`: enrolling a recipient's passkey from this
//! computer (the server emails the link; the recipient creates the key; the
//! person here confirms its fingerprint and pins it in the settings file),
//! listing and removing the pinned ones.

use crate::error::LinkError;
use crate::settings_file::{self, SettingsFileError};
use doorman_core::passkey::PinnedPasskey;
use doorman_core::{AgentSettings, SettingsChange};
use doorman_wire::Connection;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::{DEFAULT_WRITE_DEADLINE, EnrollAsk, EnrollNews};
use std::path::Path;

/// Why an enrolment did not give a passkey.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "{0} is not one of this computer's recipients: add it first (doorman settings set --recipients …)"
    )]
    NotARecipient(String),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the server ended the enrolment: {0}")]
    Failed(String),
    #[error("the server closed the connection before the passkey was made")]
    Closed,
}

impl From<doorman_wire::ConnectionError> for EnrollError {
    fn from(error: doorman_wire::ConnectionError) -> Self {
        EnrollError::Link(LinkError::Wire(error))
    }
}

/// An enrolment under way: the link is sent, the code known.
pub struct Enrolment {
    connection: Connection<Upgraded>,
    /// The code the recipient's page shows too.
    pub code: String,
    /// Seconds the link works.
    pub expires_in: u64,
}

/// Asks the server to email `recipient` an enrolment link.
pub async fn start(settings: &AgentSettings, recipient: &str) -> Result<Enrolment, EnrollError> {
    if !settings
        .desktop_sharing
        .recipients
        .iter()
        .any(|r| r.eq_ignore_ascii_case(recipient))
    {
        return Err(EnrollError::NotARecipient(recipient.to_string()));
    }
    // One connection, from `doorman settings`: no dialer to share.
    let dialer = crate::dialing::SharedDialer::default();
    let io = dialer.dial(settings, doorman_wire::ENROLL_PATH).await?;
    let mut connection = Connection::new(io);
    connection.set_write_deadline(Some(DEFAULT_WRITE_DEADLINE));
    connection
        .write_message(&EnrollAsk {
            recipient: recipient.to_string(),
        })
        .await?;
    match connection.read_message::<EnrollNews>().await? {
        Some(EnrollNews::Started { code, expires_in }) => Ok(Enrolment {
            connection,
            code,
            expires_in,
        }),
        Some(EnrollNews::Failed { message }) => Err(EnrollError::Failed(message)),
        _ => Err(EnrollError::Closed),
    }
}

impl Enrolment {
    /// Waits for the recipient to create the passkey.
    pub async fn passkey(mut self) -> Result<PinnedPasskey, EnrollError> {
        match self.connection.read_message::<EnrollNews>().await? {
            Some(EnrollNews::Enrolled { passkey }) => Ok(passkey),
            Some(EnrollNews::Failed { message }) => Err(EnrollError::Failed(message)),
            _ => Err(EnrollError::Closed),
        }
    }

    /// Gives the enrolment up: its link stops working. Returns once the
    /// server has forgotten it (it closes the connection then).
    pub async fn stop(self) -> Result<(), EnrollError> {
        let (mut reader, mut writer) = self.connection.split();
        writer.shutdown().await?;
        loop {
            match reader.read_frame().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(error) if error.is_hang_up() => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Pins `passkey` in the settings file (replacing one with the same id).
pub fn pin(config: &Path, passkey: PinnedPasskey) -> Result<AgentSettings, SettingsFileError> {
    let settings = settings_file::load(config)?;
    let mut passkeys = settings.desktop_sharing.passkeys;
    passkeys.retain(|key| key.id != passkey.id);
    passkeys.push(passkey);
    settings_file::apply(
        config,
        &SettingsChange {
            passkeys: Some(passkeys),
            ..SettingsChange::default()
        },
    )
}

/// Removes the pinned passkeys of `which` (a recipient, or a credential
/// id); how many.
pub fn unpin(config: &Path, which: &str) -> Result<usize, SettingsFileError> {
    let settings = settings_file::load(config)?;
    let mut passkeys = settings.desktop_sharing.passkeys;
    let before = passkeys.len();
    passkeys
        .retain(|key| !key.recipient.eq_ignore_ascii_case(which) && key.id.to_string() != which);
    let removed = before - passkeys.len();
    if removed > 0 {
        settings_file::apply(
            config,
            &SettingsChange {
                passkeys: Some(passkeys),
                ..SettingsChange::default()
            },
        )?;
    }
    Ok(removed)
}
