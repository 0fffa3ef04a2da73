//! The console's session recordings: an operator sees the recordings of
//! their own shell sessions and plays them back in xterm.js at the pace
//! they happened. Administrators see everyone's with `doorman admin
//! recordings`; an operator reaches no one else's (another's id is 404),
//! nor those of an earlier operator of the same name.

use super::{TERMINAL_POLICY, page, signed_in};
use crate::AppState;
use crate::clock::format_time;
use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

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
}

#[derive(Template)]
#[template(path = "console_replay.html")]
struct ReplayPage {
    operator: String,
    id: i64,
    computer: String,
    started: String,
}

fn internal(error: &crate::store::StoreError) -> Response {
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
        .store
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
) -> Result<(String, crate::store::recordings::RecordingRow, Vec<u8>), Response> {
    let Some(who) = signed_in(state, headers).await else {
        return Err((StatusCode::UNAUTHORIZED, "signed out").into_response());
    };
    let not_found = || (StatusCode::NOT_FOUND, "no such recording").into_response();
    let id: i64 = id.parse().map_err(|_| not_found())?;
    match state.broker.store.recording(id).await {
        Ok(Some((row, data))) if row.operator_id == Some(who.operator_id) => {
            Ok((who.operator, row, data))
        }
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
    let (operator, row, _) = match own(&state, &headers, &id).await {
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
/// the player.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, _, data) = match own(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match crate::recording::cast::decode(&data) {
        Ok((header, events)) => {
            let events: Vec<(f64, String, String)> =
                events.into_iter().map(|e| (e.at, e.code, e.text)).collect();
            Json(serde_json::json!({ "header": header, "events": events })).into_response()
        }
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, message).into_response(),
    }
}
