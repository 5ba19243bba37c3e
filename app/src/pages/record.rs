//! The record page: camera preview, send it to the server over WebRTC, see what was saved.
use leptos::html::Video;
use leptos::prelude::*;
use leptos_meta::Title;

use super::common::{
    CodecList, ErrorBanner, LinkFacts, Log, LogPanel, SdpPanel, SocketState, format_bytes,
    format_codec, format_duration,
};
use crate::protocol::{RecordingMeta, SessionState};

/// Camera/microphone state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaState {
    Off,
    Requesting,
    Live,
}

/// Where the current recording is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecPhase {
    Idle,
    /// Offer made, waiting for the answer and the connection.
    Negotiating,
    Recording,
    /// STOP sent, waiting for the server's RECORDING.
    Saving,
}

/// Everything the record page shows; the browser code writes these signals.
#[derive(Clone, Copy)]
pub struct RecordUi {
    pub media: RwSignal<MediaState>,
    pub socket: RwSignal<SocketState>,
    pub phase: RwSignal<RecPhase>,
    pub ice: RwSignal<String>,
    pub peer: RwSignal<String>,
    pub elapsed_ms: RwSignal<u64>,
    pub bitrate_kbps: RwSignal<Option<f64>>,
    pub local_sdp: RwSignal<String>,
    pub remote_sdp: RwSignal<String>,
    pub codecs: RwSignal<Vec<String>>,
    pub error: RwSignal<Option<String>>,
    pub saved: RwSignal<Option<RecordingMeta>>,
    pub server: RwSignal<Option<SessionState>>,
    pub log: Log,
    pub preview: NodeRef<Video>,
}

impl RecordUi {
    fn new() -> Self {
        RecordUi {
            media: RwSignal::new(MediaState::Off),
            socket: RwSignal::new(SocketState::Closed),
            phase: RwSignal::new(RecPhase::Idle),
            ice: RwSignal::new("—".into()),
            peer: RwSignal::new("—".into()),
            elapsed_ms: RwSignal::new(0),
            bitrate_kbps: RwSignal::new(None),
            local_sdp: RwSignal::new(String::new()),
            remote_sdp: RwSignal::new(String::new()),
            codecs: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            saved: RwSignal::new(None),
            server: RwSignal::new(None),
            log: Log::new(),
            preview: NodeRef::new(),
        }
    }
}

#[component]
pub fn RecordPage() -> impl IntoView {
    let ui = RecordUi::new();

    #[cfg(feature = "hydrate")]
    {
        Effect::new(move |_| {
            ui.codecs.set(crate::client::video_codecs(false));
        });
        on_cleanup(crate::client::record::unmount);
    }

    let connect = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::record::connect(ui);
    };
    let record = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::record::record(ui);
    };
    let stop = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::record::stop(ui);
    };
    let disconnect = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::record::disconnect(ui);
    };

    let media = ui.media;
    let phase = ui.phase;
    let socket = ui.socket;
    let busy = move || matches!(phase.get(), RecPhase::Negotiating | RecPhase::Recording);
    let can_connect = move || media.get() == MediaState::Off;
    let can_record = move || media.get() == MediaState::Live && !busy();
    let can_stop = busy;
    let can_disconnect =
        move || media.get() != MediaState::Off || socket.get() != SocketState::Closed;

    let status = move || match (media.get(), phase.get()) {
        (MediaState::Off, _) => "Not connected",
        (MediaState::Requesting, _) => "Asking for camera and microphone…",
        (MediaState::Live, RecPhase::Idle) => "Ready to record",
        (MediaState::Live, RecPhase::Negotiating) => "Connecting to the server…",
        (MediaState::Live, RecPhase::Recording) => "Recording",
        (MediaState::Live, RecPhase::Saving) => "Saving…",
    };
    let state_attr = move || match (media.get(), phase.get()) {
        (MediaState::Off, _) => "disconnected",
        (MediaState::Requesting, _) => "requesting",
        (MediaState::Live, RecPhase::Idle) => "ready",
        (MediaState::Live, RecPhase::Negotiating) => "negotiating",
        (MediaState::Live, RecPhase::Recording) => "recording",
        (MediaState::Live, RecPhase::Saving) => "saving",
    };

    let video = view! {
        <div class="video-frame">
            <video
                node_ref=ui.preview
                data-testid="preview"
                aria-label="Camera preview"
                muted=true
                autoplay=true
                playsinline=true
            ></video>
            <Show when=move || media.get() != MediaState::Live>
                <div class="video-placeholder" aria-hidden="true">
                    {move || {
                        if media.get() == MediaState::Requesting {
                            "Waiting for camera permission…"
                        } else {
                            "Press Connect to turn on the camera"
                        }
                    }}
                </div>
            </Show>
            <Show when=move || phase.get() == RecPhase::Recording>
                <div class="rec-badge" aria-hidden="true">
                    "REC " {move || format_duration(ui.elapsed_ms.get())}
                </div>
            </Show>
        </div>
    }
    .into_any();

    let controls = view! {
        <div class="controls" role="group" aria-label="Recording controls">
            <button
                type="button"
                class="btn"
                data-testid="connect"
                disabled=move || !can_connect()
                on:click=connect
            >
                "Connect"
            </button>
            <button
                type="button"
                class="btn primary record"
                data-testid="record"
                disabled=move || !can_record()
                on:click=record
            >
                <span class="rec-dot" aria-hidden="true"></span>
                "Record"
            </button>
            <button
                type="button"
                class="btn"
                data-testid="stop"
                disabled=move || !can_stop()
                on:click=stop
            >
                "Stop"
            </button>
            <button
                type="button"
                class="btn ghost"
                data-testid="disconnect"
                disabled=move || !can_disconnect()
                on:click=disconnect
            >
                "Disconnect"
            </button>
        </div>
    }
    .into_any();

    let facts = view! {
        <dl class="facts">
            <div>
                <dt>"Elapsed"</dt>
                <dd data-testid="elapsed">{move || format_duration(ui.elapsed_ms.get())}</dd>
            </div>
            <LinkFacts
                bitrate_label="Outgoing"
                bitrate_kbps=ui.bitrate_kbps
                ice=ui.ice
                peer=ui.peer
                socket=ui.socket
            />
            <div>
                <dt>"Written"</dt>
                <dd data-testid="server-bytes">
                    {move || {
                        ui.server
                            .get()
                            .map_or_else(|| "—".into(), |s| format_bytes(s.bytes))
                    }}
                </dd>
            </div>
        </dl>
    }
    .into_any();

    let saved = view! {
        <Show when=move || ui.saved.with(Option::is_some)>
            {move || {
                ui.saved
                    .get()
                    .map(|m| {
                        let size = if m.width > 0 {
                            format!("{}×{}", m.width, m.height)
                        } else {
                            "no video".into()
                        };
                        view! {
                            <div class="saved" data-testid="saved" data-id=m.id.clone() role="status">
                                <strong>"Saved: "</strong>
                                <span class="saved-name">{m.name.clone()}</span>
                                ", "
                                {format_duration(m.duration_ms)}
                                ", "
                                {format_codec(m.video_codec)}
                                ", "
                                {size}
                                ", "
                                {format_bytes(m.bytes)}
                                {m.note.clone().map(|n| view! { <span class="muted">" — " {n}</span> })}
                                " "
                                <a href=format!("/play?recording={}", m.id)>"Play it"</a>
                            </div>
                        }
                    })
            }}
        </Show>
    }
    .into_any();

    let side = view! {
        <div class="side">
            <CodecList codecs=ui.codecs title="Video codecs this browser can send" />
            <SdpPanel local=ui.local_sdp remote=ui.remote_sdp />
        </div>
    }
    .into_any();

    view! {
        <Title text="Record · pion-the-sky" />
        <div class="page-head">
            <h1>"Record"</h1>
            <p class="lead">
                "Send your camera and microphone to the server, which records them to disk."
            </p>
        </div>
        <ErrorBanner error=ui.error />
        <div class="session-grid">
            <section class="card stage" aria-labelledby="preview-title">
                <div class="card-head">
                    <h2 id="preview-title">"Preview"</h2>
                    <span
                        class="status-pill"
                        data-testid="status"
                        data-state=state_attr
                        role="status"
                        aria-live="polite"
                    >
                        <span class="dot" aria-hidden="true"></span>
                        {status}
                    </span>
                </div>
                {video}
                {controls}
                {facts}
                {saved}
            </section>
            {side}
        </div>
        <LogPanel log=ui.log />
    }
    .into_any()
}
