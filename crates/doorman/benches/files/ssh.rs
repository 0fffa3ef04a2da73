//! The OpenSSH side of the benchmark: a throwaway `sshd` on loopback,
//! `scp` of one file and `tar c | ssh … tar x` of a tree, both with
//! AES-256-GCM, each timed as a whole process from spawn to exit.

use crate::{CIPHER, RUN_DEADLINE};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs `program args…` to its end, which must be a success: how long
/// from spawn to exit.
async fn timed(program: &str, args: &[String]) -> Duration {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let output = tokio::time::timeout(RUN_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} took over {RUN_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// `text` as one word for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// sshd on loopback with a throwaway key, for `scp` and `ssh`.
pub struct Ssh {
    _sshd: doorman_test_support::sshd::Sshd,
    port: u16,
    key: PathBuf,
    user: String,
}

impl Ssh {
    /// What every `scp` and `ssh` run takes (the port's flag differs).
    fn options(&self) -> Vec<String> {
        let mut options = vec!["-c".to_string(), CIPHER.into()];
        options.extend(["-i".to_string(), self.key.display().to_string()]);
        for option in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
        ] {
            options.extend(["-o".to_string(), option.to_string()]);
        }
        options
    }

    fn login(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// `scp FILE user@127.0.0.1:DEST/`.
    pub async fn scp(&self, file: &Path, dest: &Path) -> Duration {
        let mut args = vec!["-q".to_string()];
        args.extend(self.options());
        args.extend(["-P".to_string(), self.port.to_string()]);
        args.push(file.display().to_string());
        args.push(format!("{}:{}/", self.login(), dest.display()));
        timed("scp", &args).await
    }

    /// `tar c -C PARENT NAME | ssh … 'tar x -C DEST'`.
    pub async fn tar(&self, tree: &Path, dest: &Path) -> Duration {
        let parent = tree.parent().unwrap().display().to_string();
        let name = tree.file_name().unwrap().to_string_lossy().to_string();
        let options: Vec<String> = self.options().iter().map(|o| quote(o)).collect();
        let remote = format!("tar x -C {}", quote(&dest.display().to_string()));
        let pipeline = format!(
            "set -o pipefail; tar c -C {} {} | ssh {} -p {} {} {}",
            quote(&parent),
            quote(&name),
            options.join(" "),
            self.port,
            self.login(),
            quote(&remote)
        );
        timed("bash", &["-c".to_string(), pipeline]).await
    }
}

/// sshd with a host key and a user key made now, listening on loopback
/// only; `None` when OpenSSH's server is not installed (or cannot run).
pub async fn start_sshd(dir: &Path) -> Option<Ssh> {
    let sshd = doorman_test_support::sshd::start(dir).await?;
    Some(Ssh {
        port: sshd.port,
        key: sshd.user_key.clone(),
        user: sshd.user.clone(),
        _sshd: sshd,
    })
}
