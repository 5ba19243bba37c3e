//! The record page's browser side: camera, websocket, and one peer connection per recording.
use std::cell::RefCell;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaStream, MediaStreamConstraints, MediaStreamTrack, RtcRtpTransceiverDirection};

use super::{Peer, Socket, SocketEvent, js_error_name, js_error_text, now_ms, peer_states};
use crate::pages::common::SocketState;
use crate::pages::record::{MediaState, RecPhase, RecordUi};
use crate::protocol::{ClientMessage, ServerMessage, SessionDescription, SessionPhase};

/// How long to wait for the server's RECORDING after STOP before giving up on it.
const SAVE_TIMEOUT_MS: i32 = 20_000;

#[derive(Default)]
struct Recorder {
    /// Bumped on disconnect, so late continuations of an old session do nothing.
    generation: u64,
    stream: Option<MediaStream>,
    socket: Option<Socket>,
    peer: Option<Peer>,
    /// When the current peer connected (ms, monotonic).
    started_at: Option<f64>,
    /// Last bytesSent sample (time ms, bytes).
    last_sample: Option<(f64, f64)>,
}

thread_local! {
    static REC: RefCell<Recorder> = RefCell::new(Recorder::default());
}

fn with<R>(f: impl FnOnce(&mut Recorder) -> R) -> R {
    REC.with(|r| f(&mut r.borrow_mut()))
}

fn generation() -> u64 {
    with(|r| r.generation)
}

/// Drops the peer (closing it) outside of the state borrow.
fn drop_peer() {
    let peer = with(|r| {
        r.started_at = None;
        r.last_sample = None;
        r.peer.take()
    });
    drop(peer);
}

fn current_peer_id() -> Option<u64> {
    with(|r| r.peer.as_ref().map(|p| p.id))
}

/// Why getUserMedia failed, in words.
fn media_error_text(err: &JsValue) -> String {
    let detail = js_error_text(err);
    let why = match js_error_name(err).as_deref() {
        Some("NotAllowedError") | Some("PermissionDeniedError") => {
            "Permission to use the camera and microphone was denied. Allow access in the browser's site settings and press Connect again."
        }
        Some("NotFoundError") | Some("DevicesNotFoundError") => {
            "No camera or microphone was found. Plug one in and press Connect again."
        }
        Some("NotReadableError") | Some("TrackStartError") => {
            "The camera or microphone could not be started; another application may be using it."
        }
        Some("OverconstrainedError") => "The camera cannot deliver 640×480 video.",
        Some("SecurityError") => "The browser blocked camera access on this page.",
        Some("AbortError") => "Starting the camera was interrupted.",
        _ => "Could not open the camera and microphone.",
    };
    format!("{why} ({detail})")
}

/// Connect: open the camera and microphone, show the preview, open the websocket.
pub fn connect(ui: RecordUi) {
    if ui.media.get_untracked() != MediaState::Off {
        return;
    }
    ui.error.set(None);
    ui.media.set(MediaState::Requesting);
    ui.log.info("Asking for camera and microphone (640×480)…");
    let generation = generation();
    spawn_local(async move {
        let result = open_camera().await;
        if generation != self::generation() {
            if let Ok(stream) = result {
                stop_tracks(&stream);
            }
            return;
        }
        let stream = match result {
            Ok(stream) => stream,
            Err(text) => {
                ui.media.set(MediaState::Off);
                ui.log.error(text.clone());
                ui.error.set(Some(text));
                return;
            }
        };
        let labels: Vec<String> = stream
            .get_tracks()
            .iter()
            .filter_map(|t| t.dyn_into::<MediaStreamTrack>().ok())
            .map(|t| format!("{} ({})", t.kind(), t.label()))
            .collect();
        ui.log.ok(format!("Camera on: {}", labels.join(", ")));
        if let Some(video) = super::video_element(ui.preview) {
            video.set_muted(true);
            video.set_src_object(Some(&stream));
            let log = ui.log;
            super::play_video(&video, move |e| {
                log.warn(format!("Preview did not start: {e}"))
            });
        }
        with(|r| r.stream = Some(stream));
        ui.media.set(MediaState::Live);
        open_socket(ui);
    });
}

async fn open_camera() -> Result<MediaStream, String> {
    let window = super::window();
    let devices = window
        .navigator()
        .media_devices()
        .ok()
        .filter(|d| !d.is_undefined())
        .ok_or_else(|| {
            if window.is_secure_context() {
                "This browser cannot access cameras (navigator.mediaDevices is missing)."
                    .to_string()
            } else {
                "Camera access needs a secure page: open this site over https:// or on localhost."
                    .to_string()
            }
        })?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio(&JsValue::TRUE);
    let video = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&video, &"width".into(), &JsValue::from(640));
    let _ = js_sys::Reflect::set(&video, &"height".into(), &JsValue::from(480));
    constraints.set_video(&video);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|e| media_error_text(&e))?;
    let stream = JsFuture::from(promise)
        .await
        .map_err(|e| media_error_text(&e))?;
    Ok(stream.unchecked_into())
}

fn stop_tracks(stream: &MediaStream) {
    for track in stream.get_tracks().iter() {
        if let Ok(track) = track.dyn_into::<MediaStreamTrack>() {
            track.stop();
        }
    }
}

/// Opens the websocket unless one is open or opening; returns a handle to wait on.
fn open_socket(ui: RecordUi) -> Option<web_sys::WebSocket> {
    let generation = generation();
    super::ensure_socket(
        |f| with(|r| f(&mut r.socket)),
        ui.socket,
        ui.log,
        ui.error,
        move |ev| on_socket_event(ui, generation, ev),
    )
}

fn on_socket_event(ui: RecordUi, generation: u64, ev: SocketEvent) {
    if generation != self::generation() {
        return;
    }
    match ev {
        SocketEvent::Open => {
            ui.socket.set(SocketState::Open);
            ui.log
                .ok(format!("Connected to the server ({})", super::ws_url()));
        }
        SocketEvent::Message(text) => on_message(ui, &text),
        SocketEvent::Error => ui.log.warn("Websocket error"),
        SocketEvent::Closed { code, reason } => {
            let socket = with(|r| r.socket.take());
            drop(socket);
            ui.socket.set(SocketState::Closed);
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            ui.log.warn(format!(
                "Connection to the server closed (code {code}{reason})"
            ));
            match ui.phase.get_untracked() {
                RecPhase::Negotiating | RecPhase::Recording => {
                    drop_peer();
                    ui.phase.set(RecPhase::Idle);
                    set_peer_labels(ui, None);
                    let text = "The connection to the server was lost; the recording stopped.";
                    ui.error.set(Some(text.into()));
                }
                RecPhase::Saving => {
                    ui.phase.set(RecPhase::Idle);
                    ui.log.warn(
                        "Did not hear back about the saved recording; see the recordings list.",
                    );
                }
                RecPhase::Idle => {}
            }
        }
    }
}

fn on_message(ui: RecordUi, text: &str) {
    let msg = match serde_json::from_str::<ServerMessage>(text) {
        Ok(msg) => msg,
        Err(e) => {
            ui.log
                .warn(format!("Unrecognized message from the server: {e}"));
            return;
        }
    };
    match msg {
        ServerMessage::Answer(data) => {
            let Some(peer_id) = current_peer_id() else {
                ui.log
                    .warn("Got an answer but no recording is in progress; ignored.");
                return;
            };
            let answer = match SessionDescription::decode(&data) {
                Ok(a) => a,
                Err(e) => {
                    fail(ui, format!("The server's answer is not usable: {e}"));
                    return;
                }
            };
            ui.remote_sdp.set(answer.sdp.clone());
            ui.log.info("Answer received; connecting…");
            let Some(pc) = with(|r| r.peer.as_ref().map(|p| p.pc.clone())) else {
                return;
            };
            spawn_local(async move {
                let result = super::apply_answer(&pc, &answer).await;
                if current_peer_id() != Some(peer_id) {
                    return;
                }
                if let Err(e) = result {
                    fail(ui, e);
                }
            });
        }
        ServerMessage::Error(text) => {
            ui.log.error(format!("Server: {text}"));
            ui.error.set(Some(text));
            if current_peer_id().is_some() {
                drop_peer();
                set_peer_labels(ui, None);
            }
            ui.phase.set(RecPhase::Idle);
        }
        ServerMessage::Recording(meta) => {
            let size = if meta.width > 0 {
                format!("{}×{}", meta.width, meta.height)
            } else {
                "no video".into()
            };
            ui.log.ok(format!(
                "Saved: {}, {}, {}, {}, {}",
                meta.name,
                crate::pages::common::format_duration(meta.duration_ms),
                crate::pages::common::format_codec(meta.video_codec),
                size,
                crate::pages::common::format_bytes(meta.bytes),
            ));
            if let Some(note) = &meta.note {
                ui.log.warn(format!("Note: {note}"));
            }
            ui.saved.set(Some(meta));
            if ui.phase.get_untracked() == RecPhase::Saving {
                ui.phase.set(RecPhase::Idle);
            }
        }
        ServerMessage::State(state) => {
            if state.phase == SessionPhase::Recording
                && ui.phase.get_untracked() == RecPhase::Negotiating
            {
                ui.phase.set(RecPhase::Recording);
            }
            ui.server.set(Some(state));
        }
        ServerMessage::NowPlaying(_) | ServerMessage::Skipped(_) => {}
    }
}

/// Shows an error and ends the current recording attempt.
fn fail(ui: RecordUi, text: String) {
    ui.log.error(text.clone());
    ui.error.set(Some(text));
    let had_peer = current_peer_id().is_some();
    if had_peer {
        if let Some(socket) = with(|r| r.socket.as_ref().map(Socket::handle)) {
            let _ = socket.send_with_str(&ClientMessage::Stop.to_json());
        }
        drop_peer();
    }
    set_peer_labels(ui, None);
    ui.phase.set(RecPhase::Idle);
}

fn set_peer_labels(ui: RecordUi, states: Option<(String, String)>) {
    let (ice, peer) = states.unwrap_or_else(|| ("—".into(), "—".into()));
    ui.ice.set(ice);
    ui.peer.set(peer);
}

/// Record: a new peer connection sending the camera's tracks, offered to the server.
pub fn record(ui: RecordUi) {
    if ui.media.get_untracked() != MediaState::Live
        || matches!(
            ui.phase.get_untracked(),
            RecPhase::Negotiating | RecPhase::Recording
        )
    {
        return;
    }
    let Some(stream) = with(|r| r.stream.clone()) else {
        return;
    };
    ui.error.set(None);
    ui.saved.set(None);
    ui.server.set(None);
    ui.local_sdp.set(String::new());
    ui.remote_sdp.set(String::new());
    ui.elapsed_ms.set(0);
    ui.bitrate_kbps.set(None);
    ui.phase.set(RecPhase::Negotiating);
    drop_peer();

    let mut peer = match Peer::new(move |pc| on_peer_state(ui, pc)) {
        Ok(p) => p,
        Err(e) => {
            fail(ui, format!("Could not create the WebRTC connection: {e}"));
            return;
        }
    };
    for track in stream.get_tracks().iter() {
        if let Ok(track) = track.dyn_into::<MediaStreamTrack>() {
            peer.add_transceiver_track(&track, RtcRtpTransceiverDirection::Sendonly);
        }
    }
    let pc = peer.pc.clone();
    let peer_id = peer.id;
    let pc_tick = pc.clone();
    peer.every(1000, move || tick(ui, pc_tick.clone(), peer_id));
    with(|r| r.peer = Some(peer));
    set_peer_labels(ui, Some(peer_states(&pc)));
    ui.log
        .info("Creating the offer and gathering ICE candidates…");

    spawn_local(async move {
        let Some(ws) = open_socket(ui) else {
            fail(ui, "Could not connect to the server.".into());
            return;
        };
        super::send_offer(
            &pc,
            &ws,
            ui.log,
            ui.local_sdp,
            move || current_peer_id() == Some(peer_id),
            move |e| fail(ui, e),
            |offer| {
                with(|r| {
                    r.socket
                        .as_ref()
                        .map(|s| s.send(&ClientMessage::Record { offer }.to_json()))
                })
            },
        )
        .await;
    });
}

fn on_peer_state(ui: RecordUi, pc: &web_sys::RtcPeerConnection) {
    let (ice, conn) = peer_states(pc);
    ui.log.info(format!("ICE {ice}, peer {conn}"));
    set_peer_labels(ui, Some((ice, conn.clone())));
    match conn.as_str() {
        "connected" => {
            let first = with(|r| {
                let first = r.started_at.is_none();
                if first {
                    r.started_at = Some(now_ms());
                }
                first
            });
            if first {
                ui.phase.set(RecPhase::Recording);
                ui.log.ok("Recording");
            }
        }
        "failed" => fail(
            ui,
            "The WebRTC connection to the server failed (no route between browser and server?)."
                .into(),
        ),
        _ => {}
    }
}

/// Once a second: elapsed time and outgoing bitrate.
fn tick(ui: RecordUi, pc: web_sys::RtcPeerConnection, peer_id: u64) {
    let Some(started) = with(|r| r.started_at) else {
        return;
    };
    ui.elapsed_ms.set((now_ms() - started).max(0.0) as u64);
    spawn_local(async move {
        let Some(stats) = super::stats(&pc).await else {
            return;
        };
        if current_peer_id() != Some(peer_id) {
            return;
        }
        let now = now_ms();
        let previous = with(|r| r.last_sample.replace((now, stats.bytes_sent)));
        if let Some((t, bytes)) = previous {
            let dt = (now - t) / 1000.0;
            if dt > 0.2 {
                let kbps = ((stats.bytes_sent - bytes) * 8.0 / dt / 1000.0).max(0.0);
                ui.bitrate_kbps.set(Some(kbps));
            }
        }
    });
}

/// Stop: tell the server, close the peer, wait for the RECORDING summary.
pub fn stop(ui: RecordUi) {
    let phase = ui.phase.get_untracked();
    if !matches!(phase, RecPhase::Negotiating | RecPhase::Recording) {
        return;
    }
    let sent = with(|r| {
        r.socket
            .as_ref()
            .map(|s| s.send(&ClientMessage::Stop.to_json()))
    });
    drop_peer();
    set_peer_labels(ui, None);
    ui.bitrate_kbps.set(None);
    match sent {
        Some(Ok(())) if phase == RecPhase::Recording => {
            ui.phase.set(RecPhase::Saving);
            ui.log
                .info("Stopped; waiting for the server to finish the file…");
            let generation = generation();
            spawn_local(async move {
                super::sleep(SAVE_TIMEOUT_MS).await;
                if generation == self::generation()
                    && current_peer_id().is_none()
                    && ui.phase.try_get_untracked() == Some(RecPhase::Saving)
                {
                    ui.phase.set(RecPhase::Idle);
                    ui.log
                        .warn("The server did not confirm the recording; see the recordings list.");
                }
            });
        }
        Some(Ok(())) => {
            ui.phase.set(RecPhase::Idle);
            ui.log.info("Cancelled before the recording started.");
        }
        _ => {
            ui.phase.set(RecPhase::Idle);
            ui.log
                .warn("Stopped, but the server could not be told (connection closed).");
        }
    }
}

/// Disconnect: stop the camera, close the peer and the websocket.
pub fn disconnect(ui: RecordUi) {
    if ui.phase.get_untracked() == RecPhase::Recording {
        let _ = with(|r| {
            r.socket
                .as_ref()
                .map(|s| s.send(&ClientMessage::Stop.to_json()))
        });
    }
    teardown();
    if let Some(video) = super::video_element(ui.preview) {
        video.set_src_object(None);
    }
    ui.media.set(MediaState::Off);
    ui.socket.set(SocketState::Closed);
    ui.phase.set(RecPhase::Idle);
    ui.bitrate_kbps.set(None);
    set_peer_labels(ui, None);
    ui.log.info("Disconnected");
}

/// Releases everything (page left or disconnect).
fn teardown() {
    let (stream, socket, peer) = with(|r| {
        r.generation += 1;
        r.started_at = None;
        r.last_sample = None;
        (r.stream.take(), r.socket.take(), r.peer.take())
    });
    drop(peer);
    if let Some(stream) = stream {
        stop_tracks(&stream);
    }
    drop(socket);
}

/// Called when the page unmounts.
pub fn unmount() {
    let recording = with(|r| r.peer.is_some());
    if recording {
        let _ = with(|r| {
            r.socket
                .as_ref()
                .map(|s| s.send(&ClientMessage::Stop.to_json()))
        });
    }
    teardown();
}
