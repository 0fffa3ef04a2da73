//! One ACME order, from account to certificate: the account (created once
//! per directory and kept, sealed, in the database), the order for the
//! domains, a TLS-ALPN-01 answer per domain on the server's own port, and
//! the certificate chain with its new key.

use super::served::{ServedCertificate, challenge_certificate};
use super::{AcmeError, AcmeSettings};
use doorman_runtime::secrets::ServerKey;
use doorman_store::Store;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::time::Duration;

/// Sealing purpose of an ACME account's credentials.
const ACCOUNT_PURPOSE: &str = "acme account";

/// A new certificate: its chain and its private key, both PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

pub async fn issue(
    settings: &AcmeSettings,
    http: &super::http::AcmeHttp,
    served: &ServedCertificate,
    store: &Store,
    key: &ServerKey,
) -> Result<Issued, AcmeError> {
    let account = account(settings, http, store, key).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Refused(format!(
                    "the authorization for {} is {status:?}",
                    authorization.identifier()
                )));
            }
        }
        let mut challenge = authorization
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or_else(|| {
                AcmeError::Refused("the CA offers no tls-alpn-01 challenge".to_string())
            })?;
        let domain = challenge.identifier().to_string();
        let answer =
            challenge_certificate(&domain, challenge.key_authorization().digest().as_ref())
                .map_err(AcmeError::Certificate)?;
        served.set_challenge(&domain, answer);
        challenge.set_ready().await?;
    }
    let patient = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let status = order.poll_ready(&patient).await;
    served.clear_challenges();
    match status? {
        OrderStatus::Ready => {}
        status => {
            return Err(AcmeError::Refused(format!(
                "the order ended {status:?}: the CA could not validate the domains (is port 443 \
                 of each domain this server?)"
            )));
        }
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&patient).await?;
    Ok(Issued { chain_pem, key_pem })
}

/// The account at the settings' directory: the stored one, or a new one
/// (terms of service agreed, `--acme-email` as contact), stored sealed.
async fn account(
    settings: &AcmeSettings,
    http: &super::http::AcmeHttp,
    store: &Store,
    key: &ServerKey,
) -> Result<Account, AcmeError> {
    let builder = || Account::builder_with_http(Box::new(http.clone()));
    if let Some(sealed) = store.acme_account(&settings.directory).await? {
        let credentials = key
            .open(ACCOUNT_PURPOSE, &sealed)
            .and_then(|json| serde_json::from_slice::<AccountCredentials>(&json).ok())
            .ok_or(AcmeError::Sealed)?;
        return Ok(builder().from_credentials(credentials).await?);
    }
    let contact: Vec<String> = settings
        .email
        .iter()
        .map(|email| format!("mailto:{email}"))
        .collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await?;
    let json =
        serde_json::to_vec(&credentials).map_err(|e| AcmeError::Certificate(e.to_string()))?;
    let sealed = key
        .seal(ACCOUNT_PURPOSE, &json)
        .map_err(|_| AcmeError::Certificate("no randomness to seal the account".into()))?;
    store
        .save_acme_account(&settings.directory, &sealed)
        .await?;
    tracing::info!(directory = %settings.directory, "ACME account created");
    Ok(account)
}
