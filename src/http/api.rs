//! `/api/recordings` (a JSON API over the store) and `/api/sessions` (the live sessions), for
//! scripts and other services.
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use crate::AppState;
use crate::error::ApiError;
use app::protocol::{RecordingMeta, Rename};

pub async fn list(State(state): State<AppState>) -> Json<Vec<RecordingMeta>> {
    Json(state.store.list())
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RecordingMeta>, ApiError> {
    Ok(Json(state.store.get(&id)?))
}

pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Rename>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RecordingMeta>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let store = state.store.clone();
    let meta = tokio::task::spawn_blocking(move || store.rename(&id, &body.name))
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))??;
    let _ = state.changes.send(());
    Ok(Json(meta))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.delete(&id))
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))??;
    let _ = state.changes.send(());
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `GET /metrics`: Prometheus / OpenMetrics text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let rtc = state.rtc.stats();
    state
        .metrics
        .set_rtc(rtc.live_peers as u64, rtc.live_tasks as u64, rtc.nacks_sent);
    state.metrics.response()
}

/// Every live session, oldest first.
pub async fn sessions(State(state): State<AppState>) -> Json<Vec<app::protocol::SessionInfo>> {
    Json(state.registry.list())
}

/// Stops a session: a recording is finalized and kept, as with STOP. 202: it is ending.
pub async fn stop_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    if state.registry.stop(&id) {
        Ok(axum::http::StatusCode::ACCEPTED)
    } else {
        Err(ApiError::NotFound(format!(
            "session {} not found",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// `POST /api/sessions/{id}/forwards`: forward a live recording as plain RTP.
pub async fn start_forward(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<app::protocol::ForwardRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<app::protocol::ForwardInfo>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let codec = body.codec.map(crate::store::codec_of);
    match state
        .forwards
        .start(&state, &id, &body.host, body.port, codec)
        .await
    {
        Ok(info) => Ok((axum::http::StatusCode::CREATED, Json(info))),
        Err(e) => Err(forward_refusal(e)),
    }
}

/// The HTTP answer to a forward that could not start.
fn forward_refusal(e: crate::gateway::forward::ForwardError) -> ApiError {
    use crate::gateway::forward::ForwardError as E;
    match e {
        e @ E::NoSuchSession(_) => ApiError::NotFound(e.to_string()),
        e @ E::NotAllowed(_) => ApiError::Forbidden(e.to_string()),
        e @ (E::BadHost(_) | E::BadPort(_)) => ApiError::BadRequest(e.to_string()),
        e @ E::TooMany(_) => ApiError::Conflict(e.to_string()),
        e @ E::Socket(_) => ApiError::Internal(e.to_string()),
        e @ E::Transcode(_) => ApiError::Unprocessable(e.to_string()),
    }
}

/// `POST /api/forwards`: a playback of stored recordings sent as plain RTP; 201 with the
/// forward (its SDP under the playback's session). `DELETE` on the forward, or on the
/// session, ends it.
pub async fn start_playback_forward(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: Result<
        Json<app::protocol::PlaybackForwardRequest>,
        axum::extract::rejection::JsonRejection,
    >,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return ApiError::BadRequest(e.body_text()).into_response(),
    };
    let to = match crate::gateway::forward::parse_host(&body.host)
        .map(|ip| std::net::SocketAddr::new(ip, body.port))
        .and_then(|to| {
            crate::gateway::forward::check_destination(to, &state.config.forward_allow).map(|()| to)
        }) {
        Ok(to) => to,
        Err(e) => return forward_refusal(e).into_response(),
    };
    let request = crate::session::Request::PlayRtp {
        to,
        looping: body.looping,
        recordings: body.recordings,
        codec: body.codec.map(crate::store::codec_of),
    };
    let started = match crate::http::started::start(&state, peer.ip(), request).await {
        Ok(s) => s,
        Err(refusal) => return refusal.json(),
    };
    let crate::session::Event::Forwarding(info) = &started.first else {
        return ApiError::Internal("the playback forward did not start".into()).into_response();
    };
    let info = info.clone();
    started.keep(&state, || {});
    (axum::http::StatusCode::CREATED, Json(info)).into_response()
}

/// `GET /api/sessions/{id}/forwards`.
pub async fn list_forwards(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Json<Vec<app::protocol::ForwardInfo>> {
    Json(state.forwards.list(&id))
}

/// `DELETE /api/sessions/{id}/forwards/{n}`: 204, or 404.
pub async fn stop_forward(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, u64)>,
) -> Result<axum::http::StatusCode, ApiError> {
    if state.forwards.stop(&id, n) {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no forward {n} on this session"
        )))
    }
}

/// `GET /api/sessions/{id}/forwards/{n}/sdp`: what the receiver reads.
pub async fn forward_sdp(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    let sdp = state
        .forwards
        .sdp_of(&id, n)
        .ok_or_else(|| ApiError::NotFound(format!("no forward {n} on this session")))?;
    Ok(([(header::CONTENT_TYPE, "application/sdp")], sdp).into_response())
}

/// `GET /api/recordings/{id}/thumbnail`: the recording's poster (JPEG), made now if missing.
pub async fn thumbnail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use crate::thumbnail::PosterError as E;
    let store = state.store.clone();
    let made =
        tokio::task::spawn_blocking(move || crate::thumbnail::get_or_make(store.as_ref(), &id))
            .await
            .map_err(|_| ApiError::Internal("the poster could not be made".into()))?;
    match made {
        Ok(jpeg) => Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=3600"),
                ),
            ],
            jpeg,
        )
            .into_response()),
        Err(E::Store(e)) => Err(e.into()),
        Err(e @ (E::NotFinished(_) | E::NoVideo(_) | E::NoPicture(_))) => {
            Err(ApiError::NotFound(e.to_string()))
        }
        Err(E::Other(e)) => Err(ApiError::Internal(e)),
    }
}

/// The media file, with its MIME type, Range and conditional requests (tower-http's ServeFile).
pub async fn file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (meta, path) = state.store.media_path(&id)?;
    // ServeFile answers Range and conditional requests; the MIME type follows the extension
    // (video/webm, video/mp4).
    let res = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if res.status() == axum::http::StatusCode::NOT_FOUND {
        return Err(crate::store::StoreError::NotFound(id).into());
    }
    let mut res = res.into_response();
    let filename = format!("{}.{}", sanitize(&meta.name), meta.container);
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{filename}\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " -_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
