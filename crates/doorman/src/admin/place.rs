//! Where `doorman admin` finds the server's data, and the one rule about
//! making it. The first of these that names a data directory or a database
//! decides both: `--data-dir` or `--database-url`; `DOORMAN_DATA_DIR` or
//! `DOORMAN_DATABASE_URL`; `data_dir` and `database_url` in the server's
//! own settings file (`--config`, read as the server reads it); else
//! `./doorman-data`. A SQLite database that is not there is an error that
//! names it, unless `--create` asks for one: a mistyped directory, or a
//! command run in the wrong working directory, creates nothing.

use crate::cli::AdminArgs;
use anyhow::{Context, Result, anyhow, bail};
use doorman_server::config::{DEFAULT_DATA_DIR, ServerSettings};
use doorman_store::Store;
use std::path::{Path, PathBuf};

/// The environment variables that stand in for `--data-dir` and
/// `--database-url`.
pub const DATA_DIR_ENV: &str = "DOORMAN_DATA_DIR";
pub const DATABASE_URL_ENV: &str = "DOORMAN_DATABASE_URL";

/// What one source (the options, the environment, the settings file) says.
#[derive(Debug, Default)]
struct Given {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    /// Where it came from, as messages say it ("from DOORMAN_DATA_DIR");
    /// none for the options, which the user has just typed.
    note: Option<String>,
}

/// Where the server's data is.
#[derive(Debug)]
pub struct Place {
    /// The data directory, if the source named one (`tls init` writes there).
    data_dir: Option<PathBuf>,
    /// The database: the URL given, or the data directory's SQLite file.
    database_url: String,
    note: Option<String>,
}

impl Place {
    /// Where the options, the environment and the settings file say the
    /// data is. A `--config` file that cannot be read or is invalid is an
    /// error even when an option wins over it: it was asked for.
    pub fn find(args: &AdminArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let settings = ServerSettings::read(path)?;
                Given {
                    data_dir: settings.data_dir,
                    database_url: settings.database_url,
                    note: Some(format!("from {}", path.display())),
                }
            }
            None => Given::default(),
        };
        let options = Given {
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
            note: None,
        };
        Ok(first_named([options, environment()?, file]))
    }

    /// The data directory `tls init` writes into.
    pub fn data_dir(&self) -> Result<&Path> {
        self.data_dir.as_deref().ok_or_else(|| {
            anyhow!(
                "tls init writes into a data directory, and only a database URL was given: pass --data-dir (or set {DATA_DIR_ENV}, or data_dir in --config)"
            )
        })
    }

    /// Opens the database, and says on stderr which one it is. A SQLite file
    /// that is not there is made (with its directory) only if `create`.
    pub async fn open(&self, create: bool) -> Result<Store> {
        let file = doorman_store::sqlite_file(&self.database_url).map(absolute);
        let missing = file.as_deref().filter(|file| !file.exists());
        if let Some(file) = missing {
            if !create {
                bail!(
                    "no Doorman database at {}{}: pass --create to make one there, or give the server's: --data-dir DIR, --database-url URL or --config /etc/doorman/server.toml",
                    file.display(),
                    self.noted()
                );
            }
            if let Some(dir) = file.parent() {
                doorman_store::private::create_dir(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
        let shown = match &file {
            Some(file) => file.display().to_string(),
            None => doorman_store::shown_url(&self.database_url),
        };
        eprintln!("doorman admin: using {shown}{}", self.noted());
        let store = Store::open(&self.database_url).await?;
        if missing.is_some() {
            eprintln!(
                "doorman admin: created a new Doorman database {shown}; {}",
                self.start_hint()
            );
        }
        Ok(store)
    }

    /// ` (from …)`, when the place did not come from the options.
    fn noted(&self) -> String {
        self.note
            .as_ref()
            .map(|note| format!(" ({note})"))
            .unwrap_or_default()
    }

    /// How the server finds the database just made.
    fn start_hint(&self) -> String {
        match &self.data_dir {
            Some(dir) if self.database_url == doorman_server::default_database_url(dir) => {
                format!(
                    "start the server with --data-dir {}",
                    absolute(dir.clone()).display()
                )
            }
            _ => "start the server with the same --database-url".to_string(),
        }
    }
}

/// The first of `sources` that names a data directory or a database, else
/// the default data directory.
fn first_named(sources: impl IntoIterator<Item = Given>) -> Place {
    sources
        .into_iter()
        .find_map(named)
        .unwrap_or_else(|| Place {
            data_dir: Some(PathBuf::from(DEFAULT_DATA_DIR)),
            database_url: doorman_server::default_database_url(Path::new(DEFAULT_DATA_DIR)),
            note: Some("the default data directory".to_string()),
        })
}

/// The place a source names, if it names one.
fn named(given: Given) -> Option<Place> {
    let database_url = match (&given.database_url, &given.data_dir) {
        (Some(url), _) => url.clone(),
        (None, Some(dir)) => doorman_server::default_database_url(dir),
        (None, None) => return None,
    };
    Some(Place {
        data_dir: given.data_dir,
        database_url,
        note: given.note,
    })
}

/// What `DOORMAN_DATA_DIR` and `DOORMAN_DATABASE_URL` say (set and not
/// empty).
fn environment() -> Result<Given> {
    let data_dir = std::env::var_os(DATA_DIR_ENV)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let database_url = match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        Ok(_) | Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => bail!("{DATABASE_URL_ENV} is not UTF-8"),
    };
    let note = match (&data_dir, &database_url) {
        (_, Some(_)) => Some(format!("from {DATABASE_URL_ENV}")),
        (Some(_), None) => Some(format!("from {DATA_DIR_ENV}")),
        (None, None) => None,
    };
    Ok(Given {
        data_dir,
        database_url,
        note,
    })
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(data_dir: Option<&str>, database_url: Option<&str>, note: &str) -> Given {
        Given {
            data_dir: data_dir.map(PathBuf::from),
            database_url: database_url.map(String::from),
            note: Some(note.to_string()),
        }
    }

    #[test]
    fn the_first_source_that_names_either_decides_both() {
        let options = || given(Some("/flag"), None, "options");
        let env = || given(None, Some("postgres://db/doorman"), "env");
        let file = || given(Some("/file"), Some("postgres://file/doorman"), "file");
        let nothing = || given(None, None, "nothing");

        let place = first_named([options(), env(), file()]);
        assert_eq!(place.data_dir.as_deref(), Some(Path::new("/flag")));
        assert_eq!(place.database_url, "sqlite:///flag/doorman.db");

        let place = first_named([nothing(), env(), file()]);
        assert_eq!(place.data_dir, None);
        assert_eq!(place.database_url, "postgres://db/doorman");
        assert!(place.data_dir().is_err(), "tls init needs a directory");

        let place = first_named([nothing(), nothing(), file()]);
        assert_eq!(place.data_dir.as_deref(), Some(Path::new("/file")));
        assert_eq!(place.database_url, "postgres://file/doorman");
        assert_eq!(place.note.as_deref(), Some("file"));

        let place = first_named([nothing(), nothing(), nothing()]);
        assert_eq!(place.data_dir.as_deref(), Some(Path::new(DEFAULT_DATA_DIR)));
        assert_eq!(place.note.as_deref(), Some("the default data directory"));
    }
}
