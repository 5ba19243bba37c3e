//! pion-the-sky's server: HTTP (pages, JSON API, websocket signaling), WebRTC sessions that
//! record to and play from a [`store::RecordingStore`].
//!
//! `serve` takes an already bound listener so tests start a real server on `127.0.0.1:0`.
pub mod config;
pub mod error;
/// Entry points for the fuzz targets in `fuzz/` and the regression replay in `tests/`.
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod media_threads;
pub mod metrics;
pub mod random;
pub mod rtc;
pub mod session;
pub mod store;
pub mod thumbnail;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::store::RecordingStore;

/// What every handler and session shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn RecordingStore>,
    pub rtc: rtc::Rtc,
    /// Every live session, and the session limits (`--max-sessions`, `--max-sessions-per-ip`).
    pub registry: session::registry::SessionRegistry,
    pub leptos: LeptosOptions,
    /// Tells every open page that the recordings changed (finished, renamed, deleted).
    pub changes: tokio::sync::broadcast::Sender<()>,
    /// Cancelled when the server stops: sessions finalize their recordings and end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every websocket and session task, so that a shutdown can wait for them to finish.
    pub tasks: tokio_util::task::TaskTracker,
    /// The threads sessions run on (`--media-threads`).
    pub media: media_threads::MediaThreads,
    /// Websockets held by each client address (`--max-sockets-per-ip`).
    pub sockets_per_ip: limits::PerIp,
    /// What `GET /metrics` reports.
    pub metrics: metrics::Metrics,
    /// Recordings in progress that viewers can watch live.
    pub live: session::live::LiveHub,
    /// Stored clips being transcoded for viewers that lack their codec (shared).
    pub transcodes: session::transcode::Transcodes,
    /// Sessions made over WHIP and WHEP, by their resource URL.
    pub resources: http::whip::Resources,
    /// Live recordings forwarded as plain RTP (`gateway::forward`).
    pub forwards: gateway::forward::Forwards,
    /// Who may do what (`--token`, `--private`, `--trust-loopback`, `--open`, hosts, origins).
    pub access: http::access::Access,
    /// The token made at start (the server listens beyond loopback and none was set), to
    /// print once with the URL.
    pub generated_token: Option<String>,
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// Lets the Leptos server functions use the store.
struct Library(Arc<dyn RecordingStore>, tokio::sync::broadcast::Sender<()>);

impl app::server_fns::Library for Library {
    fn list(&self) -> Vec<app::protocol::RecordingMeta> {
        self.0.list()
    }
    fn rename(
        &self,
        id: String,
        name: String,
    ) -> app::server_fns::LibraryFuture<Result<app::protocol::RecordingMeta, String>> {
        let (store, changes) = (self.0.clone(), self.1.clone());
        Box::pin(blocking(move || {
            let r = store.rename(&id, &name).map_err(|e| e.to_string());
            let _ = changes.send(());
            r
        }))
    }
    fn delete(&self, id: String) -> app::server_fns::LibraryFuture<Result<(), String>> {
        let (store, changes) = (self.0.clone(), self.1.clone());
        Box::pin(blocking(move || {
            let r = store.delete(&id).map_err(|e| e.to_string());
            let _ = changes.send(());
            r
        }))
    }
}

/// Runs a store call (file I/O, fsync) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err("the store failed".into()))
}

/// Finds the built site (wasm, js, css, assets).
pub fn site_root(config: &Config) -> PathBuf {
    if let Some(root) = &config.site_root {
        return root.clone();
    }
    if let Ok(root) = std::env::var("LEPTOS_SITE_ROOT") {
        return PathBuf::from(root);
    }
    // target/release/pion-the-sky -> target/site
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|p| p.join("site")))
        && dir.join("pkg").is_dir()
    {
        return dir;
    }
    PathBuf::from("target/site")
}

/// Leptos options for a server whose site files are in `site_root`.
pub fn leptos_options(site_root: &std::path::Path, addr: std::net::SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("pion_the_sky")
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

impl AppState {
    /// Builds the state from configuration: opens (and repairs) the store, sets up WebRTC.
    pub fn new(config: Config, leptos: LeptosOptions) -> anyhow_like::Result<AppState> {
        let store = store::fs::FsStore::open(&config.data_dir)?;
        let rtc = rtc::Rtc::new(rtc::RtcSettings {
            ice_ips: config.ice_ip.clone(),
            public_ips: config.public_ip.clone(),
            udp_port: config.udp_port,
            ice_servers: config.ice_server.clone(),
            peer_loop: config.peer_loop,
        })?;
        rtc.bind_mux()?;
        for to in &config.forward_rtp {
            gateway::forward::check_destination(*to, &config.forward_allow)
                .map_err(|e| format!("--forward-rtp {to}: {e}"))?;
        }
        let (changes, _) = tokio::sync::broadcast::channel(16);
        let beyond_loopback = !config.bind.is_loopback();
        let generated_token = match &config.token {
            None if beyond_loopback && !config.open => Some(http::access::generate_token()?),
            _ => None,
        };
        let access = http::access::Access::new(http::access::AccessConfig {
            token: config.token.clone().or_else(|| generated_token.clone()),
            private: config.private,
            trust_loopback: config.trust_loopback,
            open: config.open,
            token_generated: generated_token.is_some(),
            allowed_hosts: config
                .allowed_host
                .iter()
                .cloned()
                .chain(config.public_ip.iter().map(|ip| ip.to_string()))
                .collect(),
            allowed_origins: config.allow_origin.clone(),
        });
        Ok(AppState {
            registry: session::registry::SessionRegistry::new(
                config.max_sessions,
                config.max_sessions_per_ip,
            ),
            tasks: tokio_util::task::TaskTracker::new(),
            media: media_threads::MediaThreads::start(config.media_threads)
                .map_err(|e| format!("cannot start the media threads: {e}"))?,
            sockets_per_ip: limits::PerIp::new(config.max_sockets_per_ip),
            metrics: metrics::Metrics::new(),
            live: session::live::LiveHub::default(),
            transcodes: session::transcode::Transcodes::default(),
            resources: http::whip::Resources::default(),
            forwards: gateway::forward::Forwards::default(),
            access,
            generated_token,
            config: Arc::new(config),
            store: Arc::new(store),
            rtc,
            leptos,
            changes,
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }
}

/// A boxed error for startup, printed as one line.
pub mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let library: Arc<dyn app::server_fns::Library> =
        Arc::new(Library(state.store.clone(), state.changes.clone()));
    let leptos = state.leptos.clone();
    Router::new()
        .merge(http::routes())
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(library.clone()),
            move || app::shell(leptos.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // Outermost: it runs first, so a `?token=` is gone from the URI before it is traced.
        .layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            http::access::guard,
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then shuts down gracefully: no new connections, every
/// session is told to end (recordings are finalized, clients get their last messages and a
/// close frame), and the call returns once they have, or after `--shutdown-timeout`.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let tasks = state.tasks.clone();
    // Posters for recordings that have none (made before posters existed), one at a time.
    // Tracked, like every task that holds the store: when `serve` returns, nothing does (a
    // server started again on the same directory must find its lock free).
    let (store, stop) = (state.store.clone(), token.clone());
    tasks.spawn_blocking(move || {
        let made = thumbnail::backfill(store.as_ref(), &stop);
        if made > 0 {
            tracing::info!(made, "posters made for older recordings");
        }
    });
    let grace = std::time::Duration::from_secs(state.config.shutdown_timeout);
    let app = router(state);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        let token = token.clone();
        async move {
            shutdown.await;
            // Sessions see this, finalize their files and close their websockets.
            token.cancel();
        }
    });
    // The grace period runs from the signal: a stalled HTTP client (a download that stopped
    // reading) cannot hold the exit beyond it.
    let deadline = async {
        token.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        r = served => r,
        _ = deadline => {
            tracing::warn!("shutdown timeout reached while HTTP connections were still open");
            Ok(())
        }
    };
    // Upgraded websockets and the sessions behind them are ours to wait for.
    tasks.close();
    let waited = tokio::time::timeout(grace, tasks.wait()).await;
    if waited.is_err() {
        tracing::warn!(
            still_running = tasks.len(),
            "shutdown timeout reached before every session finished"
        );
    } else {
        tracing::info!("every session finished");
    }
    result
}
