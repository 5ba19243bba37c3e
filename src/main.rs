use std::net::SocketAddr;

use pion_the_sky::config::Config;
use pion_the_sky::{AppState, leptos_options, serve, site_root};
use tracing_subscriber::EnvFilter;

fn main() {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            if e.exit_code == 0 {
                print!("{}", e.message);
            } else {
                eprintln!("{}", e.message);
            }
            std::process::exit(e.exit_code);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        runtime.worker_threads(config.workers);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let shutdown_timeout = std::time::Duration::from_secs(config.shutdown_timeout);
    runtime.block_on(run(config));
    // `serve` waited for the sessions within the shutdown timeout; blocking tasks stuck on a
    // hung disk must not hold the exit any longer.
    runtime.shutdown_timeout(shutdown_timeout);
}

async fn run(config: Config) {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,webrtc=warn,rtc=error,rtc_dtls=error,rtc_ice=error,rtc_srtp=error,tower_http=info")),
        )
        .init();

    let addr = SocketAddr::new(config.bind, config.port);
    let root = site_root(&config);
    if !root.join("pkg").is_dir() {
        tracing::warn!(site_root = %root.display(), "site files not found: build with `cargo leptos build --release` or pass --site-root");
    }
    let leptos = leptos_options(&root, addr);
    let state = match AppState::new(config, leptos) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(
        "pion-the-sky listening on http://{addr} (video codec {:?}, recordings in {})",
        state.config.vcodec,
        state.config.data_dir.display()
    );
    if state.config.open {
        tracing::warn!(
            "--open: access control is off; anyone who reaches the port can record, rename and delete"
        );
    }
    if let Some(token) = &state.generated_token {
        // Printed once, like Jupyter: the server is reachable beyond this machine.
        let host = if state.config.bind.is_unspecified() {
            "localhost".to_owned()
        } else {
            state.config.bind.to_string()
        };
        println!(
            "Remote clients need the access token. Open this URL (or set --token / PION_TOKEN):\n    http://{host}:{}/?token={token}",
            state.config.port
        );
    }
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down");
    };
    if let Err(e) = serve(state, listener, shutdown).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
