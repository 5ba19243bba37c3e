//! The play page: receive recordings from the server over WebRTC and play them.
use leptos::html::Video;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::common::{
    CodecList, ErrorBanner, LinkFacts, Log, LogPanel, SdpPanel, SocketState, format_duration,
};
use crate::protocol::{NowPlaying, RecordingMeta, RecordingState};
use crate::server_fns::list_recordings;

/// Where playback is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayPhase {
    Idle,
    /// Offer made, waiting for the answer and the connection.
    Negotiating,
    Playing,
}

/// Everything the play page shows; the browser code writes these signals.
#[derive(Clone, Copy)]
pub struct PlayUi {
    /// The user pressed Connect (and not Disconnect).
    pub connected: RwSignal<bool>,
    pub socket: RwSignal<SocketState>,
    pub phase: RwSignal<PlayPhase>,
    pub ice: RwSignal<String>,
    pub peer: RwSignal<String>,
    pub elapsed_ms: RwSignal<u64>,
    pub frames_decoded: RwSignal<u64>,
    pub audio_packets: RwSignal<u64>,
    pub bitrate_kbps: RwSignal<Option<f64>>,
    pub now_playing: RwSignal<Option<NowPlaying>>,
    pub skipped: RwSignal<Vec<(String, String)>>,
    pub finished: RwSignal<bool>,
    pub muted: RwSignal<bool>,
    pub local_sdp: RwSignal<String>,
    pub remote_sdp: RwSignal<String>,
    pub codecs: RwSignal<Vec<String>>,
    pub error: RwSignal<Option<String>>,
    /// The recordings as last listed, to name skipped clips.
    pub recordings: RwSignal<Vec<RecordingMeta>>,
    pub log: Log,
    pub playback: NodeRef<Video>,
}

impl PlayUi {
    fn new() -> Self {
        PlayUi {
            connected: RwSignal::new(false),
            socket: RwSignal::new(SocketState::Closed),
            phase: RwSignal::new(PlayPhase::Idle),
            ice: RwSignal::new("—".into()),
            peer: RwSignal::new("—".into()),
            elapsed_ms: RwSignal::new(0),
            frames_decoded: RwSignal::new(0),
            audio_packets: RwSignal::new(0),
            bitrate_kbps: RwSignal::new(None),
            now_playing: RwSignal::new(None),
            skipped: RwSignal::new(Vec::new()),
            finished: RwSignal::new(false),
            muted: RwSignal::new(true),
            local_sdp: RwSignal::new(String::new()),
            remote_sdp: RwSignal::new(String::new()),
            codecs: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            recordings: RwSignal::new(Vec::new()),
            log: Log::new(),
            playback: NodeRef::new(),
        }
    }
}

/// The picker's value for a recording in progress: watch it live.
const LIVE_PREFIX: &str = "live:";

fn option_value(m: &RecordingMeta) -> String {
    if m.state == RecordingState::Recording {
        format!("{LIVE_PREFIX}{}", m.id)
    } else {
        m.id.clone()
    }
}

#[component]
pub fn PlayPage() -> impl IntoView {
    let ui = PlayUi::new();
    let query = use_query_map();
    // "" = all recordings; "live:<id>" = a recording in progress (`?live=<id>`).
    let initial = match query.read_untracked().get("live") {
        Some(live) if !live.is_empty() => format!("{LIVE_PREFIX}{live}"),
        _ => query.read_untracked().get("recording").unwrap_or_default(),
    };
    let selected = RwSignal::new(initial);
    let looping = RwSignal::new(selected.get_untracked().is_empty());
    let refresh = RwSignal::new(0u32);
    let list = Resource::new(move || refresh.get(), |_| list_recordings());

    #[cfg(feature = "hydrate")]
    {
        Effect::new(move |_| {
            ui.codecs.set(crate::client::video_codecs(true));
        });
        Effect::new(move |_| {
            if let Some(Ok(items)) = list.get() {
                ui.recordings.set(items);
            }
        });
        on_cleanup(crate::client::play::unmount);
    }

    let connect = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::play::connect(ui);
    };
    let play = move |_| {
        let choice = selected.get_untracked();
        let live = choice.strip_prefix(LIVE_PREFIX).map(str::to_owned);
        let recordings = (!choice.is_empty() && live.is_none()).then(|| vec![choice]);
        let looping = looping.get_untracked() && live.is_none();
        #[cfg(feature = "hydrate")]
        crate::client::play::play(ui, recordings, looping, live);
        #[cfg(not(feature = "hydrate"))]
        let _ = (recordings, looping, live);
    };
    let stop = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::play::stop(ui);
    };
    let disconnect = move |_| {
        #[cfg(feature = "hydrate")]
        crate::client::play::disconnect(ui);
    };
    let toggle_mute = move |_| {
        ui.muted.update(|m| *m = !*m);
    };

    let phase = ui.phase;
    let connected = ui.connected;
    let busy = move || phase.get() != PlayPhase::Idle;
    let status = move || match (connected.get(), phase.get(), ui.socket.get()) {
        (false, _, _) => "Not connected",
        (true, PlayPhase::Idle, SocketState::Connecting) => "Connecting…",
        (true, PlayPhase::Idle, _) if ui.finished.get() => "Finished",
        (true, PlayPhase::Idle, _) => "Ready to play",
        (true, PlayPhase::Negotiating, _) => "Connecting to the server…",
        (true, PlayPhase::Playing, _) => "Playing",
    };
    let state_attr = move || match (connected.get(), phase.get()) {
        (false, _) => "disconnected",
        (true, PlayPhase::Idle) if ui.finished.get() => "finished",
        (true, PlayPhase::Idle) => "ready",
        (true, PlayPhase::Negotiating) => "negotiating",
        (true, PlayPhase::Playing) => "playing",
    };

    let playable = move || {
        list.get().and_then(Result::ok).map(|items| {
            items
                .into_iter()
                .filter(|m| m.playable() || m.state == RecordingState::Recording)
                .collect::<Vec<_>>()
        })
    };

    let video = view! {
        <div class="video-frame">
            <video
                node_ref=ui.playback
                data-testid="playback"
                aria-label="Playback"
                autoplay=true
                playsinline=true
                muted=true
                prop:muted=move || ui.muted.get()
            ></video>
            <Show when=move || phase.get() == PlayPhase::Idle>
                <div class="video-placeholder" aria-hidden="true">
                    {move || {
                        if connected.get() {
                            "Choose what to play and press Play"
                        } else {
                            "Press Connect, then Play"
                        }
                    }}
                </div>
            </Show>
            <button
                type="button"
                class="btn small mute"
                class:muted=move || ui.muted.get()
                data-testid="unmute"
                data-muted=move || ui.muted.get().to_string()
                on:click=toggle_mute
            >
                <svg class="icon" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
                    <path d="M3 9h4l5-4v14l-5-4H3z" fill="currentColor"></path>
                    <path
                        class="icon-muted"
                        d="M16 9l5 6M21 9l-5 6"
                        stroke="currentColor"
                        stroke-width="2"
                        stroke-linecap="round"
                        fill="none"
                    ></path>
                    <path
                        class="icon-sound"
                        d="M16 8.5a5 5 0 0 1 0 7M18.5 6a8.5 8.5 0 0 1 0 12"
                        stroke="currentColor"
                        stroke-width="2"
                        stroke-linecap="round"
                        fill="none"
                    ></path>
                </svg>
                {move || if ui.muted.get() { "Unmute" } else { "Mute" }}
            </button>
        </div>
    }
    .into_any();

    let now_playing = view! {
        <p class="now-playing" data-testid="now-playing" aria-live="polite">
            {move || match ui.now_playing.get() {
                Some(np) if phase.get() != PlayPhase::Idle => {
                    format!("Playing {} of {}: {}", np.index + 1, np.count, np.name)
                }
                _ if ui.finished.get() => "Finished playing.".to_string(),
                _ => "Nothing playing.".to_string(),
            }}
        </p>
    }
    .into_any();

    let skipped = view! {
        <Show when=move || ui.skipped.with(|s| !s.is_empty())>
            <ul class="skipped" data-testid="skipped">
                <For
                    each=move || ui.skipped.get().into_iter().enumerate()
                    key=|(i, _)| *i
                    let((_, (name, reason)))
                >
                    <li>"Skipped " <strong>{name}</strong> ": " {reason}</li>
                </For>
            </ul>
        </Show>
    }
    .into_any();

    let picker = view! {
        <div class="picker">
            <label for="recording-select">"What to play"</label>
            <Transition fallback=|| {
                view! {
                    <select id="recording-select" disabled=true>
                        <option>"Loading…"</option>
                    </select>
                }
            }>
                {move || {
                    let items = playable().unwrap_or_default();
                    let count = items.len();
                    // A preselected id (from ?recording= or ?live=) that is not playable (yet).
                    let wanted = selected.get_untracked();
                    let missing = (!wanted.is_empty() && !items.iter().any(|m| option_value(m) == wanted))
                        .then(|| {
                            let label = format!("{wanted} (not available)");
                            view! {
                                <option value=wanted.clone() selected=move || selected.get() == wanted>
                                    {label}
                                </option>
                            }
                        });
                    view! {
                        <select
                            id="recording-select"
                            data-testid="recording-select"
                            disabled=busy
                            prop:value=move || selected.get()
                            on:change=move |ev| {
                                let value = event_target_value(&ev);
                                looping.set(value.is_empty());
                                selected.set(value);
                            }
                        >
                            <option value="" selected=move || selected.get().is_empty()>
                                {format!("All recordings ({count})")}
                            </option>
                            {items
                                .into_iter()
                                .map(|m| {
                                    let id = option_value(&m);
                                    let id2 = id.clone();
                                    let label = if m.state == RecordingState::Recording {
                                        format!("● Live now: {}", m.name)
                                    } else {
                                        format!("{} ({})", m.name, format_duration(m.duration_ms))
                                    };
                                    view! {
                                        <option value=id selected=move || selected.get() == id2>
                                            {label}
                                        </option>
                                    }
                                })
                                .collect_view()}
                            {missing}
                        </select>
                    }
                }}
            </Transition>
            <label class="check">
                <input
                    type="checkbox"
                    data-testid="loop"
                    disabled=busy
                    prop:checked=move || looping.get()
                    checked=looping.get_untracked()
                    on:change=move |ev| looping.set(event_target_checked(&ev))
                />
                "Loop"
            </label>
            <button
                type="button"
                class="btn small ghost"
                aria-label="Reload the list of recordings"
                disabled=busy
                on:click=move |_| refresh.update(|n| *n += 1)
            >
                "↻"
            </button>
        </div>
    }
    .into_any();

    let controls = view! {
        <div class="controls" role="group" aria-label="Playback controls">
            <button
                type="button"
                class="btn"
                data-testid="connect"
                disabled=move || connected.get()
                on:click=connect
            >
                "Connect"
            </button>
            <button
                type="button"
                class="btn primary"
                data-testid="play"
                disabled=move || !connected.get() || busy()
                on:click=play
            >
                "▶ Play"
            </button>
            <button
                type="button"
                class="btn"
                data-testid="stop"
                disabled=move || !busy()
                on:click=stop
            >
                "Stop"
            </button>
            <button
                type="button"
                class="btn ghost"
                data-testid="disconnect"
                disabled=move || !connected.get()
                on:click=disconnect
            >
                "Disconnect"
            </button>
        </div>
    }
    .into_any();

    let facts = view! {
        <dl class="facts" data-testid="stats">
            <div>
                <dt>"Elapsed"</dt>
                <dd data-testid="elapsed">{move || format_duration(ui.elapsed_ms.get())}</dd>
            </div>
            <div>
                <dt>"Video frames decoded"</dt>
                <dd data-testid="frames-decoded">{move || ui.frames_decoded.get()}</dd>
            </div>
            <div>
                <dt>"Audio packets"</dt>
                <dd data-testid="audio-packets">{move || ui.audio_packets.get()}</dd>
            </div>
            <LinkFacts
                bitrate_label="Incoming"
                bitrate_kbps=ui.bitrate_kbps
                ice=ui.ice
                peer=ui.peer
                socket=ui.socket
            />
        </dl>
    }
    .into_any();

    let side = view! {
        <div class="side">
            <CodecList codecs=ui.codecs title="Video codecs this browser can receive" />
            <SdpPanel local=ui.local_sdp remote=ui.remote_sdp />
        </div>
    }
    .into_any();

    view! {
        <Title text="Play · pion-the-sky" />
        <div class="page-head">
            <h1>"Play"</h1>
            <p class="lead">"Watch recordings streamed back from the server over WebRTC."</p>
        </div>
        <ErrorBanner error=ui.error />
        <div class="session-grid">
            <section class="card stage" aria-labelledby="playback-title">
                <div class="card-head">
                    <h2 id="playback-title">"Playback"</h2>
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
                {now_playing}
                {skipped}
                {picker}
                {controls}
                {facts}
            </section>
            {side}
        </div>
        <LogPanel log=ui.log />
    }
    .into_any()
}
