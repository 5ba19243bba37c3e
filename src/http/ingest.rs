//! `POST /api/ingest[?name=]`: record a plain-RTP stream described by an SDP
//! (`Content-Type: application/sdp`, as `ffmpeg -f rtp -sdp_file` writes it). The server binds
//! the SDP's ports on `--ingest-bind` and answers 201 with the session once it listens; the
//! stream is then a recording like any other (listed, watchable live, played back later).
//! `DELETE /api/sessions/{id}` ends it; so does `--media-timeout` without packets.
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::AppState;
use crate::session::registry::Refused;
use crate::session::{self, Event, Rejection, Request, StartError};
use app::protocol::{ForwardTrack, IngestInfo, MAX_MESSAGE_BYTES};

#[derive(Debug, Default, Deserialize)]
pub struct IngestQuery {
    name: Option<String>,
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, Json(serde_json::json!({ "error": text }))).into_response()
}

fn track(t: &crate::rtc::IngestTrack) -> ForwardTrack {
    ForwardTrack {
        port: t.port,
        codec: match t.codec {
            media::Codec::H264 => "h264",
            media::Codec::Vp8 => "vp8",
            media::Codec::Opus => "opus",
        }
        .into(),
        payload_type: t.payload_type,
        ssrc: 0,
    }
}

pub async fn start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<IngestQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "the query string is not valid");
    };
    let name = match query.name.as_deref().map(crate::store::validate_name) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"));
    if !is_sdp {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the stream's SDP with Content-Type: application/sdp",
        );
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the SDP is larger than 1 MiB",
        );
    }
    let Ok(sdp) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the SDP is not UTF-8 text");
    };
    let plan = match crate::rtc::plan_ingest(sdp) {
        Ok(plan) => plan,
        Err(e) => {
            let status = match Rejection::from_rtc(&e) {
                Rejection::Unacceptable(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            return error(status, &e.to_string());
        }
    };
    let info_tracks = (track(&plan.video), plan.audio.as_ref().map(track));
    let (tx, mut events) = mpsc::channel(64);
    let mut handle = match session::start(&state, peer.ip(), Request::Ingest { plan, name }, tx) {
        Ok(h) => h,
        Err(e) => {
            let status = match e {
                StartError::Refused(Refused::PerIp(_)) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut response = error(status, &e.to_string());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            return response;
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
        Ok(Some(Event::Ingesting)) => {}
        other => {
            handle.stop();
            let response = match other {
                Ok(Some(Event::Rejected(Rejection::Conflict(text)))) => {
                    error(StatusCode::CONFLICT, &text)
                }
                Ok(Some(Event::Rejected(why))) => {
                    error(StatusCode::INTERNAL_SERVER_ERROR, why.message())
                }
                _ => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the ingest did not start",
                ),
            };
            handle.finished().await;
            return response;
        }
    }
    let session = handle.id.clone();
    // Later events have no client: logged; the handle is awaited so the task is not orphaned.
    let id = session.clone();
    state.tasks.spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Error(text) => tracing::info!(session = %id, "{text}"),
                Event::RecordingFinished(meta) => {
                    tracing::info!(session = %id, recording = %meta.id, "ingest recorded")
                }
                _ => {}
            }
        }
        handle.finished().await;
    });
    tracing::info!(%session, "RTP ingest listening");
    let info = IngestInfo {
        session,
        address: state.config.ingest_bind.to_string(),
        video: info_tracks.0,
        audio: info_tracks.1,
    };
    (StatusCode::CREATED, Json(info)).into_response()
}
