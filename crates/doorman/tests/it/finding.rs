//! Issue 31, "Finding things", through the binary: `doorman admin` finds
//! the server's data through its options, `DOORMAN_DATA_DIR` /
//! `DOORMAN_DATABASE_URL` or the server's own settings file, says which
//! database it used, and makes none unasked; `tls init` run again adds
//! names, `--replace` starts over; and a `tls/server.key` an older release
//! left is renamed and keeps serving.

use doorman_test_support::postgres::Postgres;
use doorman_test_support::process::{Process, after_using_line, listening_address, run_in};
use doorman_test_support::tls::handshake;
use std::net::SocketAddr;
use std::path::Path;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `doorman ARGS` with `ENV` in `dir`: (exit code, stdout, stderr).
async fn admin_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    run_in(DOORMAN, &all, env, Some(dir)).await
}

/// A data directory with a database holding one operator, `name`.
async fn data_dir_with(dir: &Path, name: &str) -> std::path::PathBuf {
    let data = dir.join(name);
    let args = [
        "--create",
        "--data-dir",
        path(&data),
        "operator",
        "add",
        name,
    ];
    let (code, _, err) = admin_in(dir, &[], &args).await;
    assert_eq!(code, 0, "{err}");
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_finds_the_data_through_options_then_environment_then_the_servers_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let flag = data_dir_with(root, "flag-op").await;
    let env = data_dir_with(root, "env-op").await;
    let file = data_dir_with(root, "file-op").await;
    let config = root.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            file.display()
        ),
    )
    .unwrap();
    let using = |data: &Path, from: &str| {
        format!(
            "doorman admin: using {}{from}",
            data.join("doorman.db").display()
        )
    };
    let list = ["--config", path(&config), "operator", "list"];

    // The server's settings file, when nothing else names a place.
    let (code, out, err) = admin_in(root, &[], &list).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("file-op  "), "{out}");
    let from_file = format!(" (from {})", config.display());
    assert_eq!(err.lines().next(), Some(using(&file, &from_file).as_str()));

    // The environment wins over the file.
    let in_env = [("DOORMAN_DATA_DIR", path(&env))];
    let (code, out, err) = admin_in(root, &in_env, &list).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("env-op  "), "{out}");
    let from_env = using(&env, " (from DOORMAN_DATA_DIR)");
    assert_eq!(err.lines().next(), Some(from_env.as_str()));

    // An option wins over both.
    let mut flagged = vec!["--data-dir", path(&flag)];
    flagged.extend_from_slice(&list);
    let (code, out, err) = admin_in(root, &in_env, &flagged).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("flag-op  "), "{out}");
    assert_eq!(err.lines().next(), Some(using(&flag, "").as_str()));
    // So does --database-url over DOORMAN_DATA_DIR.
    let url = format!("sqlite://{}", flag.join("doorman.db").display());
    let (code, out, err) =
        admin_in(root, &in_env, &["--database-url", &url, "operator", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("flag-op  "), "{out}");

    // A settings file asked for must be readable and valid, even when an
    // option wins over it.
    let missing = root.join("nope.toml");
    for args in [
        vec!["--config", path(&missing), "operator", "list"],
        vec![
            "--data-dir",
            path(&flag),
            "--config",
            path(&missing),
            "audit",
        ],
    ] {
        let (code, _, err) = admin_in(root, &[], &args).await;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot read {}", missing.display())),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    std::fs::write(&config, "data_dir = \"/x\"\nsmtp = \"typo\"\n").unwrap();
    let (code, _, err) = admin_in(root, &[], &list).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid server config"), "{err}");
    assert!(err.contains("unknown field `smtp`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_makes_no_database_in_the_working_directory_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    // As getcwd(3) names it, which is what the binary sees.
    let cwd = dir.path().canonicalize().unwrap();
    let default = cwd.join("doorman-data/doorman.db");
    for args in [
        vec!["operator", "list"],
        vec!["agent", "add", "pc"],
        vec!["operator", "add", "alice", "--computers", "*"],
    ] {
        let (code, out, err) = admin_in(&cwd, &[], &args).await;
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!(
                "no Doorman database at {} (the default data directory): pass --create",
                default.display()
            )),
            "{err}"
        );
        for option in ["--data-dir", "--config"] {
            assert!(err.contains(option), "{option}: {err}");
        }
        assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "{args:?}");
    }
    // A SQLite URL's file is no different.
    let file = cwd.join("elsewhere.db");
    let url = format!("sqlite://{}", file.display());
    let (code, _, err) = admin_in(&cwd, &[], &["--database-url", &url, "audit"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("no Doorman database at {}", file.display())),
        "{err}"
    );
    assert!(!file.exists());

    // Asked, it makes one there and says so.
    let (code, key, err) = admin_in(&cwd, &[], &["--create", "agent", "add", "pc"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(key.starts_with("dak_"), "{key}");
    assert_eq!(
        err.lines().next(),
        Some(
            format!(
                "doorman admin: using {} (the default data directory)",
                default.display()
            )
            .as_str()
        )
    );
    assert!(
        after_using_line(&err).contains("created a new Doorman database"),
        "{err}"
    );
    assert!(default.is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_names_a_postgres_database_without_its_password() {
    let postgres = Postgres::start().await;
    let database = postgres.new_database().await;
    // The test cluster trusts local connections: any password will do.
    let secret = "s3cret-password";
    let with_password = database.replacen(
        "postgres://doorman@",
        &format!("postgres://doorman:{secret}@"),
        1,
    );
    assert_ne!(with_password, database);
    let dir = tempfile::tempdir().unwrap();
    let env = [("DOORMAN_DATABASE_URL", with_password.as_str())];
    // PostgreSQL needs no --create: the database is the administrator's.
    let (code, token, err) = admin_in(dir.path(), &env, &["operator", "add", "alice"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(token.starts_with("dop_"), "{token}");
    let shown = database.replacen("postgres://doorman@", "postgres://doorman:***@", 1);
    assert_eq!(
        err.lines().next(),
        Some(format!("doorman admin: using {shown} (from DOORMAN_DATABASE_URL)").as_str())
    );
    assert!(!err.contains(secret), "{err}");
}

/// `doorman server` on loopback with `data`'s `tls init` files: the server
/// and the address it serves on.
async fn serve(data: &Path) -> (Process, SocketAddr) {
    let server = Process::start(
        DOORMAN,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(data),
        ],
    );
    let address: SocketAddr = listening_address(&server).await.parse().unwrap();
    (server, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_init_again_adds_names_and_replace_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls_init = |more: &'static [&'static str]| {
        let data = data.clone();
        async move {
            let mut args = vec!["--data-dir", path(&data), "tls", "init"];
            args.extend_from_slice(more);
            let (code, out, err) = admin_in(Path::new("/"), &[], &args).await;
            assert_eq!(code, 0, "{err}");
            out
        }
    };
    let first = tls_init(&["--name", "localhost"]).await;
    assert!(first.contains("(new)"), "{first}");
    let second = tls_init(&["--name", "doorman.example.com", "--ip", "127.0.0.1"]).await;
    assert!(second.contains("(kept)"), "{second}");
    assert!(
        second.contains(" for localhost, doorman.example.com, 127.0.0.1, valid until"),
        "{second}"
    );
    let fingerprint = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
            .expect("a fingerprint")
            .to_string()
    };
    assert_eq!(fingerprint(&first), fingerprint(&second));
    let ca = data.join("tls/ca.pem");
    let old_ca = dir.path().join("old-ca.pem");
    std::fs::copy(&ca, &old_ca).unwrap();

    // The certificate served is for every name given so far.
    let (mut server, address) = serve(&data).await;
    for name in ["localhost", "doorman.example.com", "127.0.0.1"] {
        handshake(address, &ca, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(handshake(address, &ca, "other.example.com").await.is_err());
    server.child.kill().await.unwrap();

    // --replace: a new CA, and the names given now only.
    let replaced = tls_init(&["--replace", "--name", "other.example.com"]).await;
    assert!(replaced.contains("(new)"), "{replaced}");
    assert!(
        replaced.contains(" for other.example.com, valid until"),
        "{replaced}"
    );
    assert_ne!(fingerprint(&replaced), fingerprint(&first));
    let (mut server, address) = serve(&data).await;
    handshake(address, &ca, "other.example.com").await.unwrap();
    assert!(handshake(address, &ca, "localhost").await.is_err());
    assert!(
        handshake(address, &old_ca, "other.example.com")
            .await
            .is_err()
    );
    server.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_key_an_older_release_left_as_server_key_is_renamed_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--data-dir",
        path(&data),
        "tls",
        "init",
        "--name",
        "localhost",
    ];
    let (code, _, err) = admin_in(dir.path(), &[], &args).await;
    assert_eq!(code, 0, "{err}");
    let tls = data.join("tls");
    let (old, new) = (tls.join("server.key"), tls.join("tls.key"));
    assert!(new.is_file() && !old.exists());
    // The layout before issue 31: the certificate's key beside it as
    // server.key, the name the links' key has one directory up.
    std::fs::rename(&new, &old).unwrap();

    let (mut server, address) = serve(&data).await;
    handshake(address, &tls.join("ca.pem"), "localhost")
        .await
        .unwrap();
    assert!(new.is_file() && !old.exists(), "the server renamed it");
    server.child.kill().await.unwrap();

    // `tls init` renames it too, before adding a name.
    std::fs::rename(&new, &old).unwrap();
    let args = [
        "--data-dir",
        path(&data),
        "tls",
        "init",
        "--name",
        "doorman.example.com",
    ];
    let (code, out, err) = admin_in(dir.path(), &[], &args).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(kept)") && out.contains("localhost, doorman.example.com"),
        "{out}"
    );
    assert!(new.is_file() && !old.exists());
    assert!(
        data.join("server.key").is_file(),
        "the links' key stays where it was"
    );
}
