//! The database systems the store runs on and their migrations.

use super::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};

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
    pub(super) fn migrator(self, version: i64) -> Migrator {
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
                    migration(
                        6,
                        "acme",
                        include_str!(concat!("../../migrations/", $dir, "/0006_acme.sql")),
                    ),
                    migration(
                        7,
                        "audit counts",
                        include_str!(concat!("../../migrations/", $dir, "/0007_audit_counts.sql")),
                    ),
                    migration(
                        8,
                        "recordings",
                        include_str!(concat!("../../migrations/", $dir, "/0008_recordings.sql")),
                    ),
                    migration(
                        9,
                        "passkeys",
                        include_str!(concat!("../../migrations/", $dir, "/0009_passkeys.sql")),
                    ),
                    migration(
                        10,
                        "identities",
                        include_str!(concat!("../../migrations/", $dir, "/0010_identities.sql")),
                    ),
                    migration(
                        11,
                        "reuse with local consent",
                        include_str!(concat!(
                            "../../migrations/",
                            $dir,
                            "/0011_reuse_with_local_consent.sql"
                        )),
                    ),
                    migration(
                        12,
                        "invitations",
                        include_str!(concat!("../../migrations/", $dir, "/0012_invitations.sql")),
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
pub(super) fn sqlite_url_creating(database_url: &str) -> String {
    if database_url.contains("mode=") {
        database_url.to_string()
    } else if database_url.contains('?') {
        format!("{database_url}&mode=rwc")
    } else {
        format!("{database_url}?mode=rwc")
    }
}
