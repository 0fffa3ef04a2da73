//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! directory, `postgres` on a free loopback port, killed on drop. Needs
//! Debian's `postgresql` package (`.ci/run` installs it); as root, the server
//! runs as the package's `postgres` user, since PostgreSQL refuses root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL server with a superuser `doorman` (trust auth on
/// loopback).
pub struct Postgres {
    server: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Where Debian keeps a PostgreSQL program (the newest version installed).
fn program(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("PostgreSQL is not installed ({name} not found): apt-get install postgresql")
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|bin| bin.join(name))
        .find(|path| path.exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// `program`, as the `postgres` user when we are root (`setpriv` execs it,
/// so killing the child kills the program).
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Whether the server at `url` runs a query.
async fn answers(url: &str) -> bool {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(mut connection) => sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl Postgres {
    /// Whether Debian's PostgreSQL server is installed here: for a benchmark
    /// that reports a peer it cannot run instead of failing.
    pub fn installed() -> bool {
        find_program("initdb").is_some() && find_program("postgres").is_some()
    }

    /// Creates a cluster and starts its server; returns once it accepts
    /// connections.
    pub async fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_postgres = is_root();
        if as_postgres {
            let owned = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                owned,
                "cannot hand {} to the postgres user",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let initdb = command(&program("initdb"), as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-U", "doorman", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        // A port is chosen, released and then bound by postgres: should
        // another process take it in between, postgres exits and another
        // port is tried.
        for _ in 0..5 {
            let port = free_port();
            let mut server = command(&program("postgres"), as_postgres)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("postgres starts");
            let url = format!("postgres://doorman@127.0.0.1:{port}/postgres");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if answers(&url).await {
                    return Postgres {
                        server,
                        port,
                        _dir: dir,
                    };
                }
                if server.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "postgres did not come up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("postgres could not bind a port in 5 tries");
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://doorman@127.0.0.1:{}/{name}", self.port)
    }

    /// A connection to database `name`, retried until the server is up.
    async fn connect(&self, name: &str) -> sqlx::PgConnection {
        use sqlx::Connection;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match sqlx::PgConnection::connect(&self.url(name)).await {
                Ok(connection) => return connection,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot reach postgres: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The URL of a new, empty database.
    pub async fn new_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("doorman_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let create = format!("CREATE DATABASE {name}");
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut self.connect("postgres").await)
            .await
            .expect("CREATE DATABASE");
        self.url(&name)
    }
}

/// Runs one SQL statement on the database at `url`.
pub async fn execute(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut connection)
        .await
        .expect("SQL runs");
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: an immediate shutdown in which the server still reaps its
        // own processes (SIGKILL would leave them to an init that may not).
        let quit = Command::new("kill")
            .args(["-QUIT", &self.server.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if !quit {
            let _ = self.server.kill();
        }
        let _ = self.server.wait();
    }
}
