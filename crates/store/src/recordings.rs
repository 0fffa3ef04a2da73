//! Session recordings: one row per recorded session (keyed by the
//! session's id) and its compressed chunks in order. In PostgreSQL, as in
//! SQLite, they live in the database, so every replica has them. A
//! recording belongs to its operator's id: an operator removed and added
//! again under the same name sees none of the old one's.

use super::{AuditEvent, ComputerId, Millis, OperatorId, Store, StoreError, insert_audit};
use doorman_core::AuditKind;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A recording as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecordingRow {
    /// The session's id: `doorman admin play ID`.
    pub id: i64,
    pub request_id: Option<String>,
    pub computer: String,
    pub operator: String,
    /// Whose session it was (unset: of an operator removed before ids
    /// were kept).
    pub operator_id: Option<OperatorId>,
    pub computer_id: Option<ComputerId>,
    pub started_at: Millis,
    /// Unset while the session runs (or if the server stopped mid-way).
    pub ended_at: Option<Millis>,
    pub duration_ms: Option<i64>,
    /// Bytes of asciicast text, uncompressed.
    pub size: Option<i64>,
    /// Bytes stored (compressed).
    pub stored: i64,
    pub sha256: Option<String>,
    /// Sealed on the computer with age: the chunks are one age file, which
    /// only the holders of its recipients' keys open.
    pub sealed: bool,
}

/// The columns [`recording`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "session_id, request_id, computer, operator, operator_id, computer_id, started_at, ended_at, duration_ms, size, stored, sha256, sealed"
    };
}

fn recording(row: &AnyRow) -> Result<RecordingRow, StoreError> {
    Ok(RecordingRow {
        id: row.try_get("session_id")?,
        request_id: row.try_get("request_id")?,
        computer: row.try_get("computer")?,
        operator: row.try_get("operator")?,
        operator_id: row
            .try_get::<Option<i64>, _>("operator_id")?
            .map(OperatorId),
        computer_id: row
            .try_get::<Option<i64>, _>("computer_id")?
            .map(ComputerId),
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        duration_ms: row.try_get("duration_ms")?,
        size: row.try_get("size")?,
        stored: row.try_get("stored")?,
        sha256: row.try_get("sha256")?,
        sealed: row.try_get::<i64, _>("sealed")? != 0,
    })
}

/// Whose session a recording is of.
#[derive(Clone, Debug)]
pub struct RecordingOf<'a> {
    pub request_id: Option<&'a str>,
    pub computer: &'a str,
    pub computer_id: ComputerId,
    pub operator: &'a str,
    pub operator_id: OperatorId,
    /// The computer sealed it (see [`RecordingRow::sealed`]).
    pub sealed: bool,
}

/// How a recording ended.
#[derive(Clone, Debug)]
pub struct RecordingEnd<'a> {
    pub ended_at: Millis,
    pub duration_ms: i64,
    pub size: u64,
    pub sha256: &'a str,
}

impl Store {
    pub async fn start_recording(
        &self,
        session_id: i64,
        of: &RecordingOf<'_>,
        started_at: Millis,
    ) -> Result<(), StoreError> {
        let mut writer = self.write_turn().await?;
        sqlx::query(
            "INSERT INTO recordings (session_id, request_id, computer, operator, operator_id, computer_id, started_at, sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(session_id)
        .bind(of.request_id)
        .bind(of.computer)
        .bind(of.operator)
        .bind(of.operator_id.0)
        .bind(of.computer_id.0)
        .bind(started_at)
        .bind(i64::from(of.sealed))
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    /// Appends chunk number `seq` (from 0) of a recording.
    pub async fn append_recording(
        &self,
        session_id: i64,
        seq: i64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO recording_chunks (session_id, seq, data) VALUES ($1, $2, $3)")
            .bind(session_id)
            .bind(seq)
            .bind(data.to_vec())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE recordings SET stored = stored + $1 WHERE session_id = $2")
            .bind(i64::try_from(data.len()).unwrap_or(i64::MAX))
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn finish_recording(
        &self,
        session_id: i64,
        end: &RecordingEnd<'_>,
    ) -> Result<(), StoreError> {
        let mut writer = self.write_turn().await?;
        sqlx::query(
            "UPDATE recordings SET ended_at = $1, duration_ms = $2, size = $3, sha256 = $4 WHERE session_id = $5",
        )
        .bind(end.ended_at)
        .bind(end.duration_ms)
        .bind(i64::try_from(end.size).unwrap_or(i64::MAX))
        .bind(end.sha256)
        .bind(session_id)
        .execute(&mut *writer)
        .await?;
        Ok(())
    }

    /// Recordings, newest first, of the computer or operator of that name
    /// (whoever held it), or all: for administrators, who see everyone's.
    pub async fn recordings(
        &self,
        computer: Option<&str>,
        operator: Option<&str>,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM recordings WHERE ($1 IS NULL OR computer = $1) AND ($2 IS NULL OR operator = $2) ORDER BY started_at DESC, session_id DESC"
        ))
        .bind(computer)
        .bind(operator)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(recording).collect()
    }

    /// The recordings of this operator's sessions, newest first.
    pub async fn operator_recordings(
        &self,
        operator: OperatorId,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM recordings WHERE operator_id = $1 ORDER BY started_at DESC, session_id DESC"
        ))
        .bind(operator.0)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(recording).collect()
    }

    /// A recording's row.
    pub async fn recording_row(&self, session_id: i64) -> Result<Option<RecordingRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM recordings WHERE session_id = $1"
        ))
        .bind(session_id)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.as_ref().map(recording).transpose()
    }

    /// A recording and its stored bytes (its chunks joined in order).
    pub async fn recording(
        &self,
        session_id: i64,
    ) -> Result<Option<(RecordingRow, Vec<u8>)>, StoreError> {
        let Some(row) = self.recording_row(session_id).await? else {
            return Ok(None);
        };
        let chunks =
            sqlx::query("SELECT data FROM recording_chunks WHERE session_id = $1 ORDER BY seq")
                .bind(session_id)
                .fetch_all(&mut *self.reader().await?)
                .await?;
        let mut data = Vec::new();
        for chunk in chunks {
            data.extend_from_slice(&chunk.try_get::<Vec<u8>, _>("data")?);
        }
        Ok(Some((row, data)))
    }

    /// Deletes the recordings of sessions started before `before`; how many.
    pub async fn prune_recordings(&self, before: Millis) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM recording_chunks WHERE session_id IN (SELECT session_id FROM recordings WHERE started_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let pruned = sqlx::query("DELETE FROM recordings WHERE started_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    /// Deletes the oldest finished recordings until all of them (those
    /// under way too) take at most `max_total` bytes stored, and audits
    /// each deletion; how many went.
    pub async fn prune_recordings_beyond(
        &self,
        max_total: i64,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let total: i64 = sqlx::query("SELECT COALESCE(SUM(stored), 0) AS total FROM recordings")
            .fetch_one(&mut *self.reader().await?)
            .await?
            .try_get("total")?;
        if total <= max_total {
            return Ok(0);
        }
        let oldest = sqlx::query(
            "SELECT session_id, operator, computer, stored FROM recordings WHERE ended_at IS NOT NULL ORDER BY started_at, session_id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        let mut excess = total - max_total;
        let mut tx = self.begin_write().await?;
        let mut pruned = 0;
        for row in &oldest {
            if excess <= 0 {
                break;
            }
            let id: i64 = row.try_get("session_id")?;
            let stored: i64 = row.try_get("stored")?;
            let operator: String = row.try_get("operator")?;
            let computer: String = row.try_get("computer")?;
            sqlx::query("DELETE FROM recording_chunks WHERE session_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM recordings WHERE session_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let event = AuditEvent::new(AuditKind::RecordingsPruned, now)
                .actor("retention")
                .detail(format!(
                    "recording {id} of {operator} on {computer} ({stored} bytes stored) deleted: all recordings past --recordings-max-total-bytes ({max_total})"
                ));
            insert_audit(&mut tx, &event).await?;
            excess -= stored;
            pruned += 1;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    /// Chunk number `seq` of a recording, as stored, if there is one.
    pub async fn recording_chunk(
        &self,
        session_id: i64,
        seq: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT data FROM recording_chunks WHERE session_id = $1 AND seq = $2")
                .bind(session_id)
                .bind(seq)
                .fetch_optional(&mut *self.reader().await?)
                .await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<Vec<u8>, _>("data")?),
            None => None,
        })
    }
}
