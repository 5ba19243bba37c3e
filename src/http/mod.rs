//! Thin HTTP handlers: health, the JSON API, the websocket, and access control.
pub mod access;
pub mod api;
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
        .route("/api/sessions", get(api::sessions))
        .route(
            "/api/sessions/{id}",
            axum::routing::delete(api::stop_session),
        )
}

async fn healthz() -> &'static str {
    "ok"
}
