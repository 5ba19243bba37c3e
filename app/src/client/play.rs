//! The play page's browser side: websocket, and one receive-only peer connection per playback.
use std::cell::RefCell;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use web_sys::{MediaStream, RtcRtpTransceiverDirection, RtcTrackEvent};

use super::{Peer, Socket, SocketEvent, now_ms, peer_states};
use crate::pages::common::SocketState;
use crate::pages::play::{PlayPhase, PlayUi};
use crate::protocol::{ClientMessage, ServerMessage, SessionDescription, SessionPhase};

#[derive(Default)]
struct Player {
    /// Bumped on disconnect, so late continuations of an old session do nothing.
    generation: u64,
    socket: Option<Socket>,
    peer: Option<Peer>,
    /// The stream shown in the video element for the current peer.
    stream: Option<MediaStream>,
    started_at: Option<f64>,
    last_sample: Option<(f64, f64)>,
}

thread_local! {
    static PLAYER: RefCell<Player> = RefCell::new(Player::default());
}

fn with<R>(f: impl FnOnce(&mut Player) -> R) -> R {
    PLAYER.with(|p| f(&mut p.borrow_mut()))
}

fn generation() -> u64 {
    with(|p| p.generation)
}

fn current_peer_id() -> Option<u64> {
    with(|p| p.peer.as_ref().map(|p| p.id))
}

fn drop_peer(ui: PlayUi) {
    let (peer, stream) = with(|p| {
        p.started_at = None;
        p.last_sample = None;
        (p.peer.take(), p.stream.take())
    });
    drop(peer);
    drop(stream);
    if let Some(video) = super::video_element(ui.playback) {
        video.set_src_object(None);
    }
    ui.ice.set("—".into());
    ui.peer.set("—".into());
    ui.bitrate_kbps.set(None);
}

/// Connect: open the websocket.
pub fn connect(ui: PlayUi) {
    if ui.connected.get_untracked() {
        return;
    }
    ui.error.set(None);
    ui.connected.set(true);
    open_socket(ui);
}

fn open_socket(ui: PlayUi) -> Option<web_sys::WebSocket> {
    let generation = generation();
    super::ensure_socket(
        |f| with(|p| f(&mut p.socket)),
        ui.socket,
        ui.log,
        ui.error,
        move |ev| on_socket_event(ui, generation, ev),
    )
}

fn on_socket_event(ui: PlayUi, generation: u64, ev: SocketEvent) {
    if generation != self::generation() {
        return;
    }
    match ev {
        SocketEvent::Open => {
            ui.socket.set(SocketState::Open);
            ui.log.ok("Connected to the server");
        }
        SocketEvent::Message(text) => on_message(ui, &text),
        SocketEvent::Error => ui.log.warn("Websocket error"),
        SocketEvent::Closed { code, reason } => {
            let socket = with(|p| p.socket.take());
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
            if ui.phase.get_untracked() != PlayPhase::Idle {
                drop_peer(ui);
                ui.phase.set(PlayPhase::Idle);
                ui.error.set(Some(
                    "The connection to the server was lost; playback stopped.".into(),
                ));
            }
        }
    }
}

fn recording_name(ui: PlayUi, id: &str) -> String {
    ui.recordings
        .try_with_untracked(|list| list.iter().find(|m| m.id == id).map(|m| m.name.clone()))
        .flatten()
        .unwrap_or_else(|| id.to_string())
}

fn on_message(ui: PlayUi, text: &str) {
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
            let Some((peer_id, pc)) = with(|p| p.peer.as_ref().map(|p| (p.id, p.pc.clone())))
            else {
                ui.log
                    .warn("Got an answer but nothing is playing; ignored.");
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
            spawn_local(async move {
                let result = super::apply_answer(&pc, &answer).await;
                if current_peer_id() == Some(peer_id)
                    && let Err(e) = result
                {
                    fail(ui, e);
                }
            });
        }
        ServerMessage::Error(text) => {
            ui.log.error(format!("Server: {text}"));
            ui.error.set(Some(text));
            drop_peer(ui);
            ui.now_playing.set(None);
            ui.phase.set(PlayPhase::Idle);
        }
        ServerMessage::NowPlaying(np) => {
            ui.log.ok(format!(
                "Playing {} of {}: {}",
                np.index + 1,
                np.count,
                np.name
            ));
            ui.now_playing.set(Some(np));
        }
        ServerMessage::Skipped(skipped) => {
            let name = recording_name(ui, &skipped.id);
            ui.log.warn(format!("Skipped {name}: {}", skipped.reason));
            ui.skipped.update(|list| {
                list.push((name, skipped.reason));
                if list.len() > 20 {
                    list.remove(0);
                }
            });
        }
        ServerMessage::State(state) => {
            if state.is_end() && ui.phase.get_untracked() != PlayPhase::Idle {
                if state.phase == SessionPhase::Finished {
                    ui.log.ok("Playback finished");
                    ui.finished.set(true);
                } else {
                    ui.log.warn("The server ended the playback");
                }
                drop_peer(ui);
                ui.phase.set(PlayPhase::Idle);
            } else if state.phase == SessionPhase::Playing
                && ui.phase.get_untracked() == PlayPhase::Negotiating
            {
                ui.phase.set(PlayPhase::Playing);
            }
        }
        ServerMessage::Recording(_) => {}
    }
}

fn fail(ui: PlayUi, text: String) {
    ui.log.error(text.clone());
    ui.error.set(Some(text));
    if current_peer_id().is_some() {
        if let Some(ws) = with(|p| p.socket.as_ref().map(Socket::handle)) {
            let _ = ws.send_with_str(&ClientMessage::Stop.to_json());
        }
        drop_peer(ui);
    }
    ui.phase.set(PlayPhase::Idle);
}

/// Play: a new receive-only peer connection, offered to the server with the selection.
/// `live`: watch that recording in progress instead (`recordings` and `looping` are unused).
pub fn play(ui: PlayUi, recordings: Option<Vec<String>>, looping: bool, live: Option<String>) {
    if !ui.connected.get_untracked() || ui.phase.get_untracked() != PlayPhase::Idle {
        return;
    }
    drop_peer(ui);
    ui.error.set(None);
    ui.finished.set(false);
    ui.now_playing.set(None);
    ui.skipped.set(Vec::new());
    ui.local_sdp.set(String::new());
    ui.remote_sdp.set(String::new());
    ui.elapsed_ms.set(0);
    ui.frames_decoded.set(0);
    ui.audio_packets.set(0);
    ui.phase.set(PlayPhase::Negotiating);

    let mut peer = match Peer::new(move |pc| on_peer_state(ui, pc)) {
        Ok(p) => p,
        Err(e) => {
            fail(ui, format!("Could not create the WebRTC connection: {e}"));
            return;
        }
    };
    peer.add_transceiver_kind("audio", RtcRtpTransceiverDirection::Recvonly);
    peer.add_transceiver_kind("video", RtcRtpTransceiverDirection::Recvonly);
    let peer_id = peer.id;
    peer.on_track(move |ev| on_track(ui, peer_id, ev));
    let pc = peer.pc.clone();
    let pc_tick = pc.clone();
    peer.every(1000, move || tick(ui, pc_tick.clone(), peer_id));
    with(|p| p.peer = Some(peer));
    let (ice, conn) = peer_states(&pc);
    ui.ice.set(ice);
    ui.peer.set(conn);
    let what = match (&live, &recordings) {
        (Some(id), _) => format!("the live recording {}", recording_name(ui, id)),
        (None, Some(ids)) => ids
            .iter()
            .map(|id| recording_name(ui, id))
            .collect::<Vec<_>>()
            .join(", "),
        (None, None) => "all recordings".into(),
    };
    ui.log.info(format!(
        "Play {what}{}: creating the offer and gathering ICE candidates…",
        if looping { " (loop)" } else { "" }
    ));

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
            move |offer| {
                let msg = match live {
                    Some(live) => ClientMessage::Watch { offer, live },
                    None => ClientMessage::Play {
                        offer,
                        looping,
                        recordings,
                    },
                };
                with(|p| p.socket.as_ref().map(|s| s.send(&msg.to_json())))
            },
        )
        .await;
    });
}

fn on_track(ui: PlayUi, peer_id: u64, ev: RtcTrackEvent) {
    if current_peer_id() != Some(peer_id) {
        return;
    }
    let track = ev.track();
    ui.log.info(format!("Receiving {} track", track.kind()));
    let from_event = ev.streams().get(0).dyn_into::<MediaStream>().ok();
    // Show one stream with every track of this peer, whatever streams the server declared.
    let stream = with(|p| {
        if let Some(existing) = &p.stream {
            existing.add_track(&track);
            return existing.clone();
        }
        let stream = from_event
            .clone()
            .or_else(|| MediaStream::new().ok())
            .unwrap_or_else(|| MediaStream::new().expect("MediaStream constructor"));
        if stream.get_track_by_id(&track.id()).is_none() {
            stream.add_track(&track);
        }
        p.stream = Some(stream.clone());
        stream
    });
    if let Some(video) = super::video_element(ui.playback) {
        let same = video.src_object().is_some_and(|s| s.id() == stream.id());
        if !same {
            video.set_muted(ui.muted.get_untracked());
            video.set_src_object(Some(&stream));
        }
        let log = ui.log;
        super::play_video(&video, move |e| {
            log.warn(format!("The browser did not start playback by itself ({e}); press the video's play control."))
        });
    }
}

fn on_peer_state(ui: PlayUi, pc: &web_sys::RtcPeerConnection) {
    let (ice, conn) = peer_states(pc);
    ui.log.info(format!("ICE {ice}, peer {conn}"));
    ui.ice.set(ice);
    ui.peer.set(conn.clone());
    match conn.as_str() {
        "connected" => {
            let first = with(|p| {
                let first = p.started_at.is_none();
                if first {
                    p.started_at = Some(now_ms());
                }
                first
            });
            if first {
                ui.phase.set(PlayPhase::Playing);
            }
        }
        "failed" if !ui.finished.get_untracked() => fail(
            ui,
            "The WebRTC connection to the server failed (no route between browser and server?)."
                .into(),
        ),
        _ => {}
    }
}

/// Once a second: elapsed time, decoded frames, audio packets, incoming bitrate.
fn tick(ui: PlayUi, pc: web_sys::RtcPeerConnection, peer_id: u64) {
    if let Some(started) = with(|p| p.started_at) {
        ui.elapsed_ms.set((now_ms() - started).max(0.0) as u64);
    }
    spawn_local(async move {
        let Some(stats) = super::stats(&pc).await else {
            return;
        };
        if current_peer_id() != Some(peer_id) {
            return;
        }
        ui.frames_decoded.set(stats.frames_decoded as u64);
        ui.audio_packets.set(stats.audio_packets as u64);
        let now = now_ms();
        let previous = with(|p| p.last_sample.replace((now, stats.bytes_received)));
        if let Some((t, bytes)) = previous {
            let dt = (now - t) / 1000.0;
            if dt > 0.2 {
                let kbps = ((stats.bytes_received - bytes) * 8.0 / dt / 1000.0).max(0.0);
                ui.bitrate_kbps.set(Some(kbps));
            }
        }
    });
}

/// Stop: tell the server and close the peer.
pub fn stop(ui: PlayUi) {
    if ui.phase.get_untracked() == PlayPhase::Idle {
        return;
    }
    let sent = with(|p| {
        p.socket
            .as_ref()
            .map(|s| s.send(&ClientMessage::Stop.to_json()))
    });
    drop_peer(ui);
    ui.now_playing.set(None);
    ui.phase.set(PlayPhase::Idle);
    match sent {
        Some(Ok(())) => ui.log.info("Stopped"),
        _ => ui
            .log
            .warn("Stopped, but the server could not be told (connection closed)."),
    }
}

/// Disconnect: close the peer and the websocket.
pub fn disconnect(ui: PlayUi) {
    if ui.phase.get_untracked() != PlayPhase::Idle {
        let _ = with(|p| {
            p.socket
                .as_ref()
                .map(|s| s.send(&ClientMessage::Stop.to_json()))
        });
    }
    drop_peer(ui);
    teardown();
    ui.connected.set(false);
    ui.socket.set(SocketState::Closed);
    ui.phase.set(PlayPhase::Idle);
    ui.now_playing.set(None);
    ui.log.info("Disconnected");
}

fn teardown() {
    let (socket, peer, stream) = with(|p| {
        p.generation += 1;
        p.started_at = None;
        p.last_sample = None;
        (p.socket.take(), p.peer.take(), p.stream.take())
    });
    drop(peer);
    drop(stream);
    drop(socket);
}

/// Called when the page unmounts.
pub fn unmount() {
    if current_peer_id().is_some() {
        let _ = with(|p| {
            p.socket
                .as_ref()
                .map(|s| s.send(&ClientMessage::Stop.to_json()))
        });
    }
    teardown();
}
