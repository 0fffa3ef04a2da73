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

/// The migrations, numbered, the same versions for both backends, each
/// from its own directory: (version, description, SQL).
macro_rules! migrations_in {
    ($dir:literal) => {
        [
            (
                1,
                "initial",
                include_str!(concat!("../migrations/", $dir, "/0001_initial.sql")),
            ),
            (
                2,
                "blocks",
                include_str!(concat!("../migrations/", $dir, "/0002_blocks.sql")),
            ),
            (
                3,
                "request service",
                include_str!(concat!("../migrations/", $dir, "/0003_request_service.sql")),
            ),
            (
                4,
                "server identity",
                include_str!(concat!("../migrations/", $dir, "/0004_server_identity.sql")),
            ),
            (
                5,
                "access and policies",
                include_str!(concat!(
                    "../migrations/",
                    $dir,
                    "/0005_access_and_policies.sql"
                )),
            ),
            (
                6,
                "acme",
                include_str!(concat!("../migrations/", $dir, "/0006_acme.sql")),
            ),
            (
                7,
                "audit counts",
                include_str!(concat!("../migrations/", $dir, "/0007_audit_counts.sql")),
            ),
            (
                8,
                "recordings",
                include_str!(concat!("../migrations/", $dir, "/0008_recordings.sql")),
            ),
            (
                9,
                "passkeys",
                include_str!(concat!("../migrations/", $dir, "/0009_passkeys.sql")),
            ),
            (
                10,
                "identities",
                include_str!(concat!("../migrations/", $dir, "/0010_identities.sql")),
            ),
            (
                11,
                "reuse with local consent",
                include_str!(concat!(
                    "../migrations/",
                    $dir,
                    "/0011_reuse_with_local_consent.sql"
                )),
            ),
            (
                12,
                "invitations",
                include_str!(concat!("../migrations/", $dir, "/0012_invitations.sql")),
            ),
            (
                13,
                "end to end",
                include_str!(concat!("../migrations/", $dir, "/0013_end_to_end.sql")),
            ),
            (
                14,
                "operator limits",
                include_str!(concat!("../migrations/", $dir, "/0014_operator_limits.sql")),
            ),
        ]
    };
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
        let migrations = match self {
            Backend::Sqlite => migrations_in!("sqlite"),
            Backend::Postgres => migrations_in!("postgres"),
        };
        Migrator::with_migrations(
            migrations
                .into_iter()
                .filter(|(number, _, _)| *number <= version)
                .map(|(number, description, sql)| {
                    Migration::new(
                        number,
                        description.into(),
                        MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(sql),
                        false,
                    )
                })
                .collect(),
        )
    }
}

/// The file a `sqlite:` URL names (`sqlite://FILE` or `sqlite:FILE`, any
/// options after `?`); `None` for another database or SQLite's `:memory:`.
pub fn sqlite_file(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let file = rest.split_once('?').map_or(rest, |(file, _)| file);
    let file = file.strip_prefix("//").unwrap_or(file);
    (!file.is_empty() && file != ":memory:").then(|| std::path::PathBuf::from(file))
}

/// A database URL as it may be shown to people: a SQLite database's file,
/// or the URL with its password masked (`postgres://doorman:***@db/doorman`),
/// given before the host or as a `password` option (`?password=…`).
pub fn shown_url(database_url: &str) -> String {
    if let Some(file) = sqlite_file(database_url) {
        return file.display().to_string();
    }
    match url::Url::parse(database_url) {
        Ok(mut url) => {
            if url.password().is_some() {
                // A URL with a password has a host: this cannot fail.
                let _ = url.set_password(Some("***"));
            }
            let secret = |key: &str| {
                key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
            };
            if url.query_pairs().any(|(key, _)| secret(&key)) {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(key, value)| (key.into_owned(), value.into_owned()))
                    .collect();
                let mut query = url.query_pairs_mut();
                query.clear();
                for (key, value) in &pairs {
                    let shown = if secret(key) { "***" } else { value.as_str() };
                    query.append_pair(key, shown);
                }
            }
            url.to_string()
        }
        // It may hold a password where a parser cannot find it.
        Err(_) => "the database URL given (unreadable as a URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_names_its_file_and_a_shown_url_no_password() {
        for (url, file) in [
            (
                "sqlite:///var/lib/doorman/doorman.db",
                Some("/var/lib/doorman/doorman.db"),
            ),
            ("sqlite://data/doorman.db?mode=rwc", Some("data/doorman.db")),
            ("sqlite:doorman.db", Some("doorman.db")),
            ("sqlite::memory:", None),
            ("postgres://u:p@db/doorman", None),
        ] {
            assert_eq!(
                sqlite_file(url).as_deref(),
                file.map(std::path::Path::new),
                "{url}"
            );
        }
        assert_eq!(
            shown_url("sqlite:///var/lib/doorman/doorman.db"),
            "/var/lib/doorman/doorman.db"
        );
        assert_eq!(
            shown_url("postgres://doorman:s3cret@db.example.com/doorman?sslmode=require"),
            "postgres://doorman:***@db.example.com/doorman?sslmode=require"
        );
        assert_eq!(
            shown_url("postgres://doorman@db.example.com/doorman"),
            "postgres://doorman@db.example.com/doorman"
        );
        assert_eq!(
            shown_url("postgres://doorman@db/doorman?sslmode=require&password=s3cret"),
            "postgres://doorman@db/doorman?sslmode=require&password=***"
        );
    }

    /// A migration file not in the list would never run (0014 once went
    /// unapplied so): every file of each backend's folder is listed, in
    /// order, and both backends have the same versions.
    #[test]
    fn every_migration_file_is_applied() {
        for (dir, listed) in [
            ("sqlite", migrations_in!("sqlite")),
            ("postgres", migrations_in!("postgres")),
        ] {
            let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&folder)
                .expect("the migrations folder")
                .map(|entry| {
                    entry
                        .expect("an entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            files.sort();
            let versions: Vec<i64> = listed.iter().map(|(version, _, _)| *version).collect();
            let numbered: Vec<i64> = files
                .iter()
                .map(|file| file[..4].parse().expect("a numbered file"))
                .collect();
            assert_eq!(versions, numbered, "{dir}: {files:?}");
            for ((_, _, sql), file) in listed.iter().zip(&files) {
                let on_disk = std::fs::read_to_string(folder.join(file)).expect("the file");
                assert_eq!(*sql, on_disk, "{dir}/{file}");
            }
        }
    }
}
