//! What `--acme-domain` obtained: the ACME account at each directory and the
//! certificate for each set of domains, private keys sealed by the caller.

use super::{Store, StoreError};
use sqlx::Row;

/// A certificate as stored: its chain in PEM, its key sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCertificate {
    pub chain_pem: String,
    pub sealed_key: String,
    /// When it stops being valid (ms since the epoch).
    pub not_after: i64,
}

impl Store {
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sealed_account FROM acme_accounts WHERE directory = $1")
            .bind(directory)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.map(|row| row.try_get("sealed_account")).transpose()?)
    }

    pub async fn save_acme_account(&self, directory: &str, sealed: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory, sealed_account) VALUES ($1, $2)
             ON CONFLICT (directory) DO UPDATE SET sealed_account = excluded.sealed_account",
        )
        .bind(directory)
        .bind(sealed)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }

    /// The certificate for `domains` (as [`domains_key`] joins them).
    pub async fn acme_certificate(
        &self,
        domains: &str,
    ) -> Result<Option<StoredCertificate>, StoreError> {
        let row = sqlx::query(
            "SELECT chain_pem, sealed_key, not_after FROM acme_certificates WHERE domains = $1",
        )
        .bind(domains)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.map(|row| {
            Ok(StoredCertificate {
                chain_pem: row.try_get("chain_pem")?,
                sealed_key: row.try_get("sealed_key")?,
                not_after: row.try_get("not_after")?,
            })
        })
        .transpose()
    }

    /// Keeps `certificate` for `domains`, replacing the one before.
    pub async fn save_acme_certificate(
        &self,
        domains: &str,
        certificate: &StoredCertificate,
        issued_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO acme_certificates (domains, chain_pem, sealed_key, not_after, issued_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (domains) DO UPDATE SET chain_pem = excluded.chain_pem,
                 sealed_key = excluded.sealed_key, not_after = excluded.not_after,
                 issued_at = excluded.issued_at",
        )
        .bind(domains)
        .bind(&certificate.chain_pem)
        .bind(&certificate.sealed_key)
        .bind(certificate.not_after)
        .bind(issued_at)
        .execute(&mut *self.write_turn().await?)
        .await?;
        Ok(())
    }
}

/// The key a set of domains is stored under: sorted, lower case, joined.
pub fn domains_key(domains: &[String]) -> String {
    let mut domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    domains.sort();
    domains.dedup();
    domains.join(",")
}
