//! Thin HTTP handlers: health, the JSON API, the websocket, WHIP/WHEP (`whip`), RTP ingest
//! (`ingest`), what those two share (`started`), and access control.
pub mod access;
pub mod api;
pub mod ingest;
pub mod started;
pub mod whip;
pub mod ws;

use crate::AppState;
use axum::Router;
use axum::routing::get;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(api::metrics))
        .route("/ws", get(ws::upgrade))
        .route("/api/recordings", get(api::list))
        .route(
            "/api/recordings/{id}",
            get(api::get_one).patch(api::rename).delete(api::delete),
        )
        .route("/api/recordings/{id}/file", get(api::file))
        .route("/api/recordings/{id}/thumbnail", get(api::thumbnail))
        .route("/api/sessions", get(api::sessions))
        .route(
            "/api/sessions/{id}",
            axum::routing::delete(api::stop_session),
        )
        .route(
            "/api/sessions/{id}/forwards",
            get(api::list_forwards).post(api::start_forward),
        )
        .route(
            "/api/sessions/{id}/forwards/{n}",
            axum::routing::delete(api::stop_forward),
        )
        .route("/api/sessions/{id}/forwards/{n}/sdp", get(api::forward_sdp))
        .route("/api/ingest", axum::routing::post(ingest::start))
        .route(
            "/api/forwards",
            axum::routing::post(api::start_playback_forward),
        )
        .merge(whip_routes())
}

/// WHIP and WHEP (`http::whip`): endpoints take POST, sessions PATCH and DELETE.
fn whip_routes() -> Router<AppState> {
    use axum::routing::post;
    Router::new()
        .route("/whip", post(whip::publish).options(whip::options_endpoint))
        .route(
            "/whip/{id}",
            axum::routing::delete(whip::end_whip)
                .patch(whip::patch_whip)
                .options(whip::options_resource),
        )
        .route(
            "/whep",
            post(whip::view_all).options(whip::options_endpoint),
        )
        .route(
            "/whep/{id}",
            post(whip::view_one).options(whip::options_endpoint),
        )
        .route(
            "/whep/live/{id}",
            post(whip::view_live).options(whip::options_endpoint),
        )
        .route(
            "/whep/session/{id}",
            axum::routing::delete(whip::end_whep)
                .patch(whip::patch_whep)
                .options(whip::options_resource),
        )
        // Offers are at most 1 MiB; a little more reaches the handler, which says so.
        .layer(axum::extract::DefaultBodyLimit::max(
            2 * app::protocol::MAX_MESSAGE_BYTES,
        ))
}

async fn healthz() -> &'static str {
    "ok"
}
