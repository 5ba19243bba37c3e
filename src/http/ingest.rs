//! `POST /api/ingest[?name=]`: record a plain-RTP stream described by an SDP
//! (`Content-Type: application/sdp`, as `ffmpeg -f rtp -sdp_file` writes it). The server binds
//! the SDP's ports on `--ingest-bind` and answers 201 with the session once it listens; the
//! stream is then a recording like any other (listed, watchable live, played back later).
//! `DELETE /api/sessions/{id}` ends it; so does `--media-timeout` without packets.
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::http::started::{self, Refusal};
use crate::session::{Event, Rejection, Request};
use app::protocol::{ForwardTrack, IngestInfo};

#[derive(Debug, Default, Deserialize)]
pub struct IngestQuery {
    name: Option<String>,
}

fn track(t: &crate::rtc::IngestTrack) -> ForwardTrack {
    ForwardTrack {
        port: t.port,
        codec: t.codec.id().into(),
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
    match ingest(&state, peer, query, &headers, &body).await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(refusal) => refusal.json(),
    }
}

async fn ingest(
    state: &AppState,
    peer: SocketAddr,
    query: Result<Query<IngestQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IngestInfo, Refusal> {
    let Query(query) = query
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the query string is not valid"))?;
    let name = started::recording_name(query.name.as_deref())?;
    let sdp = started::text_body(headers, body, "application/sdp", "the stream's SDP")?;
    let plan = crate::rtc::plan_ingest(sdp)
        .map_err(|e| Refusal::of_rejection(&Rejection::from_rtc(&e)))?;
    let (video, audio) = (track(&plan.video), plan.audio.as_ref().map(track));
    let started = started::start(state, peer.ip(), Request::Ingest { plan, name }).await?;
    if started.first != Event::Ingesting {
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the ingest did not start",
        ));
    }
    let session = started.handle.id.clone();
    started.keep(state, || {});
    tracing::info!(%session, "RTP ingest listening");
    Ok(IngestInfo {
        session,
        address: state.config.ingest_bind.to_string(),
        video,
        audio,
    })
}
