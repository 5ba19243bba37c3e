//! Browser-side code (WebRTC, websocket, media devices); compiled only into the wasm bundle.
//!
//! Each page keeps its browser objects (media stream, websocket, peer connection) in a
//! thread-local controller ([`record`], [`play`]) and reports to the page through the page's
//! signals. The wrappers here own their JS callbacks and detach them when dropped, so nothing
//! leaks across record/stop cycles.
pub mod play;
pub mod record;

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    CloseEvent, Event, MessageEvent, RtcConfiguration, RtcIceGatheringState, RtcPeerConnection,
    RtcRtpReceiver, RtcRtpSender, RtcRtpTransceiverDirection, RtcRtpTransceiverInit, RtcSdpType,
    RtcSessionDescriptionInit, WebSocket,
};

use crate::protocol::{SdpKind, SessionDescription};

/// How long to wait for ICE gathering before sending the offer anyway.
const ICE_GATHERING_TIMEOUT_MS: f64 = 4000.0;
/// How long to wait for the websocket to open.
const SOCKET_OPEN_TIMEOUT_MS: f64 = 8000.0;

pub fn window() -> web_sys::Window {
    web_sys::window().expect("running in a browser")
}

/// The signaling endpoint on this page's origin: `ws://host/ws` or `wss://host/ws`.
pub fn ws_url() -> String {
    let location = window().location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss:",
        _ => "ws:",
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}//{host}/ws")
}

/// Milliseconds on a monotonic clock.
pub fn now_ms() -> f64 {
    window()
        .performance()
        .map_or_else(js_sys::Date::now, |p| p.now())
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// Readable text of a thrown JS value (`DOMException`, `Error`, string...).
pub fn js_error_text(err: &JsValue) -> String {
    let field = |name: &str| {
        js_sys::Reflect::get(err, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    match (field("name"), field("message")) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (None, Some(message)) => message,
        (Some(name), None) => name,
        (None, None) => err.as_string().unwrap_or_else(|| format!("{err:?}")),
    }
}

/// A JS error's `name` (e.g. `NotAllowedError`), if it has one.
pub fn js_error_name(err: &JsValue) -> Option<String> {
    js_sys::Reflect::get(err, &JsValue::from_str("name"))
        .ok()
        .and_then(|v| v.as_string())
}

/// Whether the document is in the foreground.
pub fn page_visible() -> bool {
    window().document().is_some_and(|d| !d.hidden())
}

/// Asks the user to confirm; false if the dialog cannot be shown.
pub fn confirm(message: &str) -> bool {
    window().confirm_with_message(message).unwrap_or(false)
}

/// The browser's video codecs for sending (`RTCRtpSender`) or receiving (`RTCRtpReceiver`),
/// one entry per codec with its profiles, without the repair formats (rtx, red, fec):
/// e.g. `VP8`, `H264 (baseline, main, high 4:4:4)`, `VP9 (profile 0, 2)`.
pub fn video_codecs(receiving: bool) -> Vec<String> {
    let caps = if receiving {
        RtcRtpReceiver::get_capabilities("video")
    } else {
        RtcRtpSender::get_capabilities("video")
    };
    let Some(caps) = caps else {
        return Vec::new();
    };
    let text = |obj: &JsValue, key: &str| {
        js_sys::Reflect::get(obj, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    // (codec name, profiles) in the browser's order of preference.
    let mut codecs: Vec<(String, Vec<String>)> = Vec::new();
    for codec in caps.get_codecs().iter() {
        let mime = text(&codec, "mimeType");
        let name = mime.strip_prefix("video/").unwrap_or(&mime).to_string();
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || matches!(lower.as_str(), "rtx" | "red" | "ulpfec" | "flexfec-03") {
            continue;
        }
        let profile = codec_profile(&lower, &text(&codec, "sdpFmtpLine"));
        let entry = match codecs.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry,
            None => {
                codecs.push((name, Vec::new()));
                codecs.last_mut().expect("just pushed")
            }
        };
        if let Some(p) = profile
            && !entry.1.contains(&p)
        {
            entry.1.push(p);
        }
    }
    codecs
        .into_iter()
        .map(|(name, profiles)| {
            let lower = name.to_ascii_lowercase();
            match (lower.as_str(), profiles.is_empty()) {
                (_, true) => name,
                ("vp9" | "av1", false) => format!("{name} (profile {})", profiles.join(", ")),
                _ => format!("{name} ({})", profiles.join(", ")),
            }
        })
        .collect()
}

/// A codec's profile from its fmtp line: H.264's profile name, VP9/AV1's profile number.
fn codec_profile(codec: &str, fmtp: &str) -> Option<String> {
    let param = |key: &str| {
        fmtp.split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_string())
    };
    match codec {
        "h264" => param("profile-level-id").map(|p| {
            match p.get(..2).map(str::to_ascii_lowercase).as_deref() {
                Some("42") => "baseline".to_string(),
                Some("4d") => "main".to_string(),
                Some("64") => "high".to_string(),
                Some("f4") => "high 4:4:4".to_string(),
                _ => p,
            }
        }),
        "vp9" => param("profile-id"),
        "av1" => param("profile"),
        _ => None,
    }
}

/// What the websocket reports.
pub enum SocketEvent {
    Open,
    Message(String),
    Closed { code: u16, reason: String },
    Error,
}

/// A websocket whose callbacks live exactly as long as it does.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Socket {
    /// Opens the signaling websocket; `on_event` hears everything that happens to it.
    pub fn open(on_event: impl FnMut(SocketEvent) + 'static) -> Result<Socket, String> {
        let ws = WebSocket::new(&ws_url()).map_err(|e| js_error_text(&e))?;
        let handler: Rc<RefCell<dyn FnMut(SocketEvent)>> = Rc::new(RefCell::new(on_event));
        let emit = move |handler: &Rc<RefCell<dyn FnMut(SocketEvent)>>, ev: SocketEvent| {
            if let Ok(mut f) = handler.try_borrow_mut() {
                f(ev);
            }
        };
        let h = handler.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| emit(&h, SocketEvent::Open));
        let h = handler.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            if let Some(text) = ev.data().as_string() {
                emit(&h, SocketEvent::Message(text));
            }
        });
        let h = handler.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            emit(
                &h,
                SocketEvent::Closed {
                    code: ev.code(),
                    reason: ev.reason(),
                },
            )
        });
        let h = handler;
        let on_error =
            Closure::<dyn FnMut(Event)>::new(move |_: Event| emit(&h, SocketEvent::Error));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        })
    }

    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    pub fn is_closed(&self) -> bool {
        self.ws.ready_state() >= WebSocket::CLOSING
    }

    pub fn send(&self, text: &str) -> Result<(), String> {
        if !self.is_open() {
            return Err("the connection to the server is not open".into());
        }
        self.ws.send_with_str(text).map_err(|e| js_error_text(&e))
    }

    /// A clone of the underlying socket, to poll its state without borrowing the owner.
    pub fn handle(&self) -> WebSocket {
        self.ws.clone()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

/// Waits until `ws` is open; Err if it closes or takes too long.
pub async fn wait_open(ws: &WebSocket) -> Result<(), String> {
    let start = now_ms();
    loop {
        match ws.ready_state() {
            WebSocket::OPEN => return Ok(()),
            WebSocket::CONNECTING if now_ms() - start < SOCKET_OPEN_TIMEOUT_MS => sleep(50).await,
            WebSocket::CONNECTING => return Err("the server did not answer in time".into()),
            _ => return Err("could not connect to the server".into()),
        }
    }
}

/// A peer connection whose callbacks and timer live exactly as long as it does.
pub struct Peer {
    pub pc: RtcPeerConnection,
    /// Distinguishes this peer from earlier ones in async continuations.
    pub id: u64,
    _on_state: Closure<dyn FnMut(Event)>,
    _on_track: Option<Closure<dyn FnMut(web_sys::RtcTrackEvent)>>,
    ticker: Option<(i32, Closure<dyn FnMut()>)>,
}

thread_local! {
    static NEXT_PEER_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

impl Peer {
    /// A new `RTCPeerConnection` without ICE servers (the server is reachable directly).
    /// `on_state` runs on every ICE or connection state change.
    pub fn new(on_state: impl FnMut(&RtcPeerConnection) + 'static) -> Result<Peer, String> {
        let config = RtcConfiguration::new();
        config.set_ice_servers(&js_sys::Array::new());
        let pc =
            RtcPeerConnection::new_with_configuration(&config).map_err(|e| js_error_text(&e))?;
        let pc2 = pc.clone();
        let mut on_state = on_state;
        let on_state = Closure::<dyn FnMut(Event)>::new(move |_: Event| on_state(&pc2));
        pc.set_oniceconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        let id = NEXT_PEER_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        Ok(Peer {
            pc,
            id,
            _on_state: on_state,
            _on_track: None,
            ticker: None,
        })
    }

    /// Calls `f` for every remote track.
    pub fn on_track(&mut self, f: impl FnMut(web_sys::RtcTrackEvent) + 'static) {
        let cb = Closure::<dyn FnMut(web_sys::RtcTrackEvent)>::new(f);
        self.pc.set_ontrack(Some(cb.as_ref().unchecked_ref()));
        self._on_track = Some(cb);
    }

    /// Calls `f` every `ms` milliseconds until the peer is dropped.
    pub fn every(&mut self, ms: i32, f: impl FnMut() + 'static) {
        let cb = Closure::<dyn FnMut()>::new(f);
        if let Ok(handle) = window()
            .set_interval_with_callback_and_timeout_and_arguments_0(cb.as_ref().unchecked_ref(), ms)
        {
            self.ticker = Some((handle, cb));
        }
    }

    /// Adds a transceiver for `kind` ("audio"/"video") or a track, with `direction`.
    pub fn add_transceiver_kind(&self, kind: &str, direction: RtcRtpTransceiverDirection) {
        let init = RtcRtpTransceiverInit::new();
        init.set_direction(direction);
        self.pc.add_transceiver_with_str_and_init(kind, &init);
    }

    pub fn add_transceiver_track(
        &self,
        track: &web_sys::MediaStreamTrack,
        direction: RtcRtpTransceiverDirection,
    ) {
        let init = RtcRtpTransceiverInit::new();
        init.set_direction(direction);
        self.pc
            .add_transceiver_with_media_stream_track_and_init(track, &init);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some((handle, _cb)) = self.ticker.take() {
            window().clear_interval_with_handle(handle);
        }
        self.pc.set_oniceconnectionstatechange(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ontrack(None);
        self.pc.close();
    }
}

/// `pc.iceConnectionState` and `pc.connectionState` as text.
pub fn peer_states(pc: &RtcPeerConnection) -> (String, String) {
    let get = |name: &str| {
        js_sys::Reflect::get(pc, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| "unknown".into())
    };
    (get("iceConnectionState"), get("connectionState"))
}

/// Creates the offer, sets it as the local description, waits for ICE gathering to finish
/// (non-trickle, bounded by a timeout) and returns the complete local description.
/// The bool is true when gathering timed out.
pub async fn make_offer(pc: &RtcPeerConnection) -> Result<(SessionDescription, bool), String> {
    let offer = JsFuture::from(pc.create_offer())
        .await
        .map_err(|e| format!("createOffer failed: {}", js_error_text(&e)))?;
    let offer: RtcSessionDescriptionInit = offer.unchecked_into();
    JsFuture::from(pc.set_local_description(&offer))
        .await
        .map_err(|e| format!("setLocalDescription failed: {}", js_error_text(&e)))?;
    let start = now_ms();
    let mut timed_out = false;
    while pc.ice_gathering_state() != RtcIceGatheringState::Complete {
        if now_ms() - start > ICE_GATHERING_TIMEOUT_MS {
            timed_out = true;
            break;
        }
        if pc.signaling_state() == web_sys::RtcSignalingState::Closed {
            return Err("the connection was closed".into());
        }
        sleep(50).await;
    }
    let sdp = pc
        .local_description()
        .map(|d| d.sdp())
        .ok_or("the browser produced no local description")?;
    Ok((
        SessionDescription {
            kind: SdpKind::Offer,
            sdp,
        },
        timed_out,
    ))
}

/// The page's signaling socket: the open (or opening) one in `slot`, else a new one stored
/// there. `socket_state`, `log` and `error` show the attempt; `None` when it cannot be opened.
pub fn ensure_socket(
    slot: impl Fn(&mut dyn FnMut(&mut Option<Socket>)),
    socket_state: leptos::prelude::RwSignal<crate::pages::common::SocketState>,
    log: crate::pages::common::Log,
    error: leptos::prelude::RwSignal<Option<String>>,
    on_event: impl FnMut(SocketEvent) + 'static,
) -> Option<WebSocket> {
    use crate::pages::common::SocketState;
    use leptos::prelude::Set;
    let mut open = None;
    slot(&mut |s| open = s.as_ref().filter(|s| !s.is_closed()).map(Socket::handle));
    if open.is_some() {
        return open;
    }
    socket_state.set(SocketState::Connecting);
    log.info(format!("Connecting to {}…", ws_url()));
    match Socket::open(on_event) {
        Ok(socket) => {
            let ws = socket.handle();
            let mut socket = Some(socket);
            // The old socket (closed) is dropped outside the controller borrow.
            let mut old = None;
            slot(&mut |s| old = std::mem::replace(s, socket.take()));
            drop(old);
            Some(ws)
        }
        Err(e) => {
            socket_state.set(SocketState::Closed);
            let text = format!("Could not connect to the server: {e}");
            log.error(text.clone());
            error.set(Some(text));
            None
        }
    }
}

/// The tail both flows share once their peer is set up: make the offer, wait for the
/// websocket, then `send` the offer (`None`: the socket is gone). Every step is abandoned
/// when `current()` says a newer attempt replaced this one; failures go to `fail`.
pub async fn send_offer(
    pc: &RtcPeerConnection,
    ws: &WebSocket,
    log: crate::pages::common::Log,
    local_sdp: leptos::prelude::RwSignal<String>,
    current: impl Fn() -> bool,
    fail: impl Fn(String),
    send: impl FnOnce(SessionDescription) -> Option<Result<(), String>>,
) {
    use leptos::prelude::Set;
    let offer = make_offer(pc).await;
    if !current() {
        return;
    }
    let (offer, timed_out) = match offer {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if timed_out {
        log.warn("ICE gathering took too long; sending the candidates found so far.");
    }
    local_sdp.set(offer.sdp.clone());
    if let Err(e) = wait_open(ws).await {
        if current() {
            fail(format!("Could not connect to the server: {e}"));
        }
        return;
    }
    if !current() {
        return;
    }
    match send(offer) {
        Some(Ok(())) => log.info("Offer sent; waiting for the server's answer…"),
        Some(Err(e)) => fail(format!("Could not send the offer: {e}")),
        None => fail("The connection to the server closed.".into()),
    }
}

/// Applies the server's answer.
pub async fn apply_answer(
    pc: &RtcPeerConnection,
    answer: &SessionDescription,
) -> Result<(), String> {
    let init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    init.set_sdp(&answer.sdp);
    JsFuture::from(pc.set_remote_description(&init))
        .await
        .map(|_| ())
        .map_err(|e| format!("setRemoteDescription failed: {}", js_error_text(&e)))
}

/// Totals from `getStats()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// outbound-rtp bytesSent, all kinds.
    pub bytes_sent: f64,
    /// inbound-rtp bytesReceived, all kinds.
    pub bytes_received: f64,
    /// inbound-rtp video framesDecoded.
    pub frames_decoded: f64,
    /// inbound-rtp audio packetsReceived.
    pub audio_packets: f64,
}

pub async fn stats(pc: &RtcPeerConnection) -> Option<Stats> {
    let report = JsFuture::from(pc.get_stats()).await.ok()?;
    let mut out = Stats::default();
    let entries = js_sys::try_iter(&report).ok()??;
    let get = |obj: &JsValue, name: &str| js_sys::Reflect::get(obj, &JsValue::from_str(name)).ok();
    for entry in entries.flatten() {
        let Some(stat) = get(&entry, "1") else {
            continue;
        };
        let kind = get(&stat, "kind")
            .and_then(|v| v.as_string())
            .or_else(|| get(&stat, "mediaType").and_then(|v| v.as_string()))
            .unwrap_or_default();
        let num = |name: &str| get(&stat, name).and_then(|v| v.as_f64()).unwrap_or(0.0);
        match get(&stat, "type").and_then(|v| v.as_string()).as_deref() {
            Some("outbound-rtp") => out.bytes_sent += num("bytesSent"),
            Some("inbound-rtp") => {
                out.bytes_received += num("bytesReceived");
                if kind == "video" {
                    out.frames_decoded += num("framesDecoded");
                } else if kind == "audio" {
                    out.audio_packets += num("packetsReceived");
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// Gets the element behind a `NodeRef<Video>`.
pub fn video_element(
    node: leptos::prelude::NodeRef<leptos::html::Video>,
) -> Option<web_sys::HtmlVideoElement> {
    use leptos::prelude::GetUntracked;
    node.get_untracked()
}

/// Starts playback of a media element, ignoring autoplay refusals (reported in the log).
pub fn play_video(video: &web_sys::HtmlVideoElement, on_refused: impl FnOnce(String) + 'static) {
    if let Ok(promise) = video.play() {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = JsFuture::from(promise).await {
                // AbortError happens when the source changes during start-up; not worth a line.
                if js_error_name(&e).as_deref() != Some("AbortError") {
                    on_refused(js_error_text(&e));
                }
            }
        });
    }
}
