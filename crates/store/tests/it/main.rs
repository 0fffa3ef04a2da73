//! The store crate's integration tests, in one test binary: the database's
//! own guarantees on SQLite ([`decisions`], [`names`], [`upkeep`]) and the
//! same on PostgreSQL ([`postgres`]).

mod decisions;
mod names;
mod postgres;
mod upkeep;

/// The database URL of a data directory, as the server makes it.
pub(crate) fn database_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("doorman.db").display())
}
