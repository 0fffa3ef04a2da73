//! The console's session recordings: an operator sees the recordings of
//! their own shell sessions and plays back in xterm.js, at the pace they
//! happened, those the server recorded. One the computer sealed is listed,
//! not played: the server cannot open it, and the console runs the
//! server's code (its key holders play it with `doorman admin play
//! --identity` or age). Administrators see everyone's with `doorman admin
//! recordings`; an operator reaches no one else's (another's id is 404),
//! nor those of an earlier operator of the same name.

use super::{TERMINAL_POLICY, page, signed_in};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use doorman_core::display::format_time;
use futures_util::StreamExt;

#[derive(Template)]
#[template(path = "console_recordings.html")]
struct RecordingsPage {
    operator: String,
    recordings: Vec<Listed>,
}

struct Listed {
    id: i64,
    computer: String,
    started: String,
    duration: String,
    /// Sealed on the computer: listed, not played.
    sealed: bool,
}

#[derive(Template)]
#[template(path = "console_replay.html")]
struct ReplayPage {
    operator: String,
    id: i64,
    computer: String,
    started: String,
}

fn internal(error: &doorman_store::StoreError) -> Response {
    tracing::error!(%error, "cannot read session recordings");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// `GET /console/recordings`: this operator's recordings, newest first.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(who) = signed_in(&state, &headers).await else {
        return Redirect::to("/console").into_response();
    };
    let rows = match state
        .broker
        .store()
        .operator_recordings(who.operator_id)
        .await
    {
        Ok(rows) => rows,
        Err(error) => return internal(&error),
    };
    let recordings = rows
        .into_iter()
        .map(|row| Listed {
            id: row.id,
            computer: row.computer,
            started: format_time(row.started_at),
            duration: row.duration_ms.map_or_else(
                || "unfinished".to_string(),
                |ms| format!("{} s", (ms + 500) / 1000),
            ),
            sealed: row.sealed,
        })
        .collect();
    page(
        StatusCode::OK,
        &RecordingsPage {
            operator: who.operator,
            recordings,
        },
    )
}

/// The recording `id` if it is of a session of the signed-in operator.
async fn own(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(String, doorman_store::recordings::RecordingRow), Response> {
    let Some(who) = signed_in(state, headers).await else {
        return Err((StatusCode::UNAUTHORIZED, "signed out").into_response());
    };
    let not_found = || (StatusCode::NOT_FOUND, "no such recording").into_response();
    let id: i64 = id.parse().map_err(|_| not_found())?;
    match state.broker.store().recording_row(id).await {
        Ok(Some(row)) if row.operator_id == Some(who.operator_id) && row.sealed => Err((
            StatusCode::CONFLICT,
            "this recording was sealed on the computer: the server cannot play it; its key holders can, with `doorman admin play ID --identity FILE`",
        )
            .into_response()),
        Ok(Some(row)) if row.operator_id == Some(who.operator_id) => Ok((who.operator, row)),
        Ok(_) => Err(not_found()),
        Err(error) => Err(internal(&error)),
    }
}

/// `GET /console/recordings/{id}`: the player.
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (operator, row) = match own(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut response = page(
        StatusCode::OK,
        &ReplayPage {
            operator,
            id: row.id,
            computer: row.computer,
            started: format_time(row.started_at),
        },
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(TERMINAL_POLICY),
    );
    response
}

/// `GET /console/recordings/{id}/events`: the header and the events, for
/// the player, as one JSON object (`{"header": …, "events": [[at, code,
/// text], …]}`) written one stored chunk at a time, so that playing a long
/// recording holds one chunk in memory, not the whole.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, row) = match own(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let first = match state.broker.store().recording_chunk(row.id, 0).await {
        Ok(first) => first.unwrap_or_default(),
        Err(error) => return internal(&error),
    };
    let opened = doorman_recordings::cast::chunk_text(&first).and_then(|text| {
        let (header, rest) = doorman_recordings::cast::header(&text)?;
        Ok((header, events_json(rest)))
    });
    let (header, events) = match opened {
        Ok(opened) => opened,
        Err(message) => return (StatusCode::UNPROCESSABLE_ENTITY, message).into_response(),
    };
    let start = format!("{{\"header\":{header},\"events\":[{events}");
    let playback = Playback {
        store: state.broker.store().clone(),
        id: row.id,
        next: Some(1),
        written: !events.is_empty(),
    };
    let rest = futures_util::stream::unfold(playback, Playback::next_part);
    let body = futures_util::stream::once(std::future::ready(Ok(start))).chain(rest);
    let mut response = axum::body::Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A recording's events being sent, one stored chunk at a time.
struct Playback {
    store: doorman_store::Store,
    id: i64,
    /// The chunk to send next; none once the end is sent.
    next: Option<i64>,
    /// Whether an event was sent already (the next one needs a comma).
    written: bool,
}

impl Playback {
    /// The next part of the JSON body: a chunk's events, or the end.
    async fn next_part(mut self) -> Option<(std::io::Result<String>, Self)> {
        let seq = self.next.take()?;
        let chunk = match self.store.recording_chunk(self.id, seq).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Some((Ok("]}".to_string()), self)),
            Err(error) => {
                tracing::error!(%error, "cannot read a session recording");
                return Some((
                    Err(std::io::Error::other("cannot read the recording")),
                    self,
                ));
            }
        };
        let text = match doorman_recordings::cast::chunk_text(&chunk) {
            Ok(text) => text,
            Err(message) => {
                tracing::error!(recording = self.id, problem = ?message, "cannot play a session recording");
                return Some((Err(std::io::Error::other(message)), self));
            }
        };
        self.next = Some(seq + 1);
        let events = events_json(&text);
        let part = match (events.is_empty(), self.written) {
            (true, _) => String::new(),
            (false, true) => format!(",{events}"),
            (false, false) => {
                self.written = true;
                events
            }
        };
        Some((Ok(part), self))
    }
}

/// The events in asciicast `text` as JSON array elements joined by commas
/// (empty if there are none).
fn events_json(text: &str) -> String {
    doorman_recordings::cast::events(text)
        .map(|e| serde_json::json!([e.at, e.code, e.text]).to_string())
        .collect::<Vec<_>>()
        .join(",")
}
