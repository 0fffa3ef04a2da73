//! `doorman admin recordings list|export|prune` and `doorman admin play`:
//! the session recordings the server stored, listed, written out as
//! stored, and played back in this terminal at the pace they happened
//! (one the computer sealed, with an age identity that opens it).

use crate::cli::RecordingsCommand;
use anyhow::{Context, Result, bail};
use doorman_core::display::format_time;
use doorman_recordings::cast;
use doorman_runtime::clock::system_millis;
use doorman_store::Store;
use doorman_store::recordings::RecordingRow;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// `admin recordings …`.
pub async fn manage(store: &Store, command: RecordingsCommand) -> Result<()> {
    match command {
        RecordingsCommand::List { computer, json } => {
            for row in store.recordings(computer.as_deref(), None).await? {
                if json {
                    println!("{}", serde_json::to_string(&row)?);
                } else {
                    println!("{}", line(&row));
                }
            }
        }
        RecordingsCommand::Export { id } => {
            let Some((_, stored)) = store.recording(id).await? else {
                bail!("no recording {id}: `doorman admin recordings list` shows those there are");
            };
            let mut out = std::io::stdout();
            out.write_all(&stored)
                .and_then(|()| out.flush())
                .context("cannot write to standard output")?;
        }
        RecordingsCommand::Prune { older_than } => {
            let before = system_millis() - i64::from(older_than) * 86_400_000;
            let pruned = store.prune_recordings(before).await?;
            eprintln!("deleted {pruned} recordings of sessions older than {older_than} days");
        }
    }
    Ok(())
}

/// One recording as `recordings list` shows it.
fn line(row: &RecordingRow) -> String {
    #[allow(clippy::cast_precision_loss)]
    let duration = match row.duration_ms {
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "unfinished".to_string(),
    };
    let size = row
        .size
        .map_or_else(|| "?".to_string(), |size| format!("{size} bytes"));
    format!(
        "{}  {}  {}  {}  {}  {}  sha256 {}{}",
        row.id,
        format_time(row.started_at),
        row.computer,
        row.operator,
        duration,
        size,
        row.sha256.as_deref().unwrap_or("-"),
        if row.sealed {
            "  sealed on the computer"
        } else {
            ""
        }
    )
}

/// `admin play ID`: writes what the session displayed to standard output,
/// each output at its time (divided by `speed`).
pub async fn play(store: &Store, id: i64, identity: Option<&Path>, speed: f64) -> Result<()> {
    let Some((row, stored)) = store.recording(id).await? else {
        bail!("no recording {id}: `doorman admin recordings list` shows those there are");
    };
    let stored = match (row.sealed, identity) {
        (true, Some(identity)) => open_sealed(id, &stored, identity)?,
        (true, None) => bail!(
            "recording {id} was sealed on the computer, to its recordings_to: give --identity FILE with a key that opens it"
        ),
        (false, _) => stored,
    };
    let (_, events) = cast::decode(&stored).map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    let mut out = std::io::stdout();
    for event in events.iter().filter(|e| e.code == "o") {
        let due = Duration::try_from_secs_f64(event.at / speed).unwrap_or_default();
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            out.flush()?;
            tokio::time::sleep(wait).await;
        }
        out.write_all(event.text.as_bytes())
            .context("cannot write to standard output")?;
    }
    out.flush()?;
    Ok(())
}

/// The compressed text of recording `id`, sealed with age, opened with the
/// keys in the age identity file `identity`.
fn open_sealed(id: i64, sealed: &[u8], identity: &Path) -> Result<Vec<u8>> {
    let file = age::IdentityFile::from_file(identity.display().to_string())
        .with_context(|| format!("cannot read the age identity file {}", identity.display()))?;
    let keys = file
        .into_identities()
        .map_err(|e| anyhow::anyhow!("{}: {e}", identity.display()))?;
    let decryptor = age::Decryptor::new_buffered(sealed)
        .map_err(|e| anyhow::anyhow!("recording {id} is not an age file: {e}"))?;
    let mut reader = decryptor
        .decrypt(keys.iter().map(|key| key.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open recording {id} with {}: {e}",
                identity.display()
            )
        })?;
    let mut opened = Vec::new();
    // A recording cut short opens up to its last whole piece.
    if let Err(error) = reader.read_to_end(&mut opened) {
        if opened.is_empty() {
            bail!("cannot open recording {id}: {error}");
        }
        eprintln!("doorman: recording {id} ends early: {error}");
    }
    Ok(opened)
}
