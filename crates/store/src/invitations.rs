//! Invitations for computers to join: made by `doorman admin agent invite`
//! (only the code's hash is stored), redeemed once by `POST /join/CODE`,
//! which adds the computer in the same transaction; and what the line the
//! administrator gets names besides the code (the server's public URL and
//! its private CA's hash), recorded when the server starts.
//!
//! Redeeming is one conditional `UPDATE … WHERE used_at IS NULL AND
//! expires_at > now`: of two computers using the same code at once, one
//! claims it and the other finds it used. The name's other invitations
//! expire with it.

use super::{AuditEvent, Millis, Principal, Store, StoreError, insert_audit, insert_principal_in};
use doorman_core::AuditKind;
use sqlx::Row;

/// What redeeming an invitation code came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// The computer was added under `name`, with the key whose hash was
    /// given.
    Joined { name: String },
    /// No invitation has this code.
    Unknown,
    /// It was used at `at`.
    Used { name: String, at: Millis },
    /// It expired unused at `at`.
    Expired { name: String, at: Millis },
    /// A computer of that name was added since the invitation was made;
    /// the invitation stays unused.
    NameTaken { name: String },
}

/// Where a redemption came from, for the audit trail.
#[derive(Clone, Debug)]
pub struct JoinedFrom {
    pub address: String,
    pub user_agent: Option<String>,
}

impl Store {
    /// Records an invitation for a computer to be named `name`, valid until
    /// `expires_at`. A name an agent has already is
    /// [`StoreError::AlreadyExists`].
    pub async fn add_invitation(
        &self,
        name: &str,
        code_hash: &[u8],
        expires_at: Millis,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT id FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            tx.rollback().await?;
            return Err(StoreError::AlreadyExists {
                kind: "agent",
                name: name.to_string(),
            });
        }
        sqlx::query(
            "INSERT INTO invitations (name, code_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(code_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(AuditKind::InvitationCreated, now)
            .computer(name)
            .detail(format!(
                "single use, valid until {}",
                doorman_core::display::format_time(expires_at)
            ));
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redeems the invitation whose code hashes to `code_hash`, once: the
    /// computer is added with the key whose hash is `key_hash`, and the
    /// redemption audited, in one transaction. Anything else changes
    /// nothing and says why.
    pub async fn redeem_invitation(
        &self,
        code_hash: &[u8],
        key_hash: &[u8],
        from: &JoinedFrom,
        now: Millis,
    ) -> Result<Redemption, StoreError> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE invitations SET used_at = $1, used_from = $2
             WHERE code_hash = $3 AND used_at IS NULL AND expires_at > $1
             RETURNING name",
        )
        .bind(now)
        .bind(&from.address)
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(claimed) = claimed else {
            let row = sqlx::query(
                "SELECT name, used_at, expires_at FROM invitations WHERE code_hash = $1",
            )
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            let Some(row) = row else {
                return Ok(Redemption::Unknown);
            };
            let name: String = row.try_get("name")?;
            // Unused and unexpired, the update would have claimed it.
            return Ok(match row.try_get::<Option<i64>, _>("used_at")? {
                Some(at) => Redemption::Used { name, at },
                None => Redemption::Expired {
                    name,
                    at: row.try_get("expires_at")?,
                },
            });
        };
        let name: String = claimed.try_get("name")?;
        match insert_principal_in(&mut tx, Principal::Agent, &name, key_hash, now).await {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                tx.rollback().await?;
                return Ok(Redemption::NameTaken { name });
            }
            Err(error) => return Err(error),
        }
        // The name's other invitations (a line thought lost, made again)
        // end here: removed one day, the computer must not come back
        // through one of them.
        sqlx::query(
            "UPDATE invitations SET expires_at = $1
             WHERE name = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&name)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(AuditKind::InvitationRedeemed, now)
            .computer(&name)
            .address(&from.address)
            .user_agent(from.user_agent.clone())
            .detail("the computer joined and was added");
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Redemption::Joined { name })
    }

    /// Records the public URL and the SHA-256 (hex) of the private CA the
    /// server presents, for the lines `doorman admin agent invite` prints.
    pub async fn record_join_details(
        &self,
        public_url: &str,
        ca_sha256: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE server_identity SET public_url = $1, ca_sha256 = $2 WHERE id = 1")
            .bind(public_url)
            .bind(ca_sha256)
            .execute(&mut *self.write_turn().await?)
            .await?;
        Ok(())
    }

    /// The public URL and private CA hash the server last started with;
    /// `None` before a server recorded them.
    pub async fn join_details(&self) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query("SELECT public_url, ca_sha256 FROM server_identity WHERE id = 1")
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        match row.try_get::<Option<String>, _>("public_url")? {
            Some(url) => Ok(Some((url, row.try_get("ca_sha256")?))),
            None => Ok(None),
        }
    }
}
