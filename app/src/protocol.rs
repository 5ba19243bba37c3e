//! The `/ws` signaling protocol and the API's data types, shared by the server and the browser.
//!
//! Wire format (kept from the original Go/Pion demo): every message is a JSON object
//! `{"op": OP, "data": ...}`. Offers and answers travel as base64 of the JSON session
//! description (`{"type":"offer","sdp":"..."}`).
//!
//! Client to server: `RECORD` (data = offer), `PLAY` (data = offer; optional top-level
//! `"loop": bool` and `"recording": id | [ids]`), `STOP`.
//! Server to client: `ANSWER` (data = answer), `ERROR` (data = human readable text),
//! `RECORDING` (data = [`RecordingMeta`] of the clip just finished), `NOWPLAYING`
//! (data = [`NowPlaying`]), `SKIPPED` (data = [`Skipped`]), `STATE` (data = [`SessionState`]).
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Largest websocket message the server accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The message shown when PLAY finds nothing to play (the seed's wording).
pub const NO_RECORDINGS: &str =
    "There are no recorded videos to playback. Please record a video first.";

/// A session description as browsers serialize `RTCSessionDescription`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: SdpKind,
    pub sdp: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

impl SessionDescription {
    /// base64(JSON), the seed's encoding on the wire.
    pub fn encode(&self) -> String {
        // Serializing two strings cannot fail.
        B64.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes base64(JSON) and checks the SDP looks like one.
    pub fn decode(data: &str) -> Result<Self, ProtocolError> {
        let bytes = B64
            .decode(data.trim())
            .map_err(|_| ProtocolError::NotBase64)?;
        let desc: SessionDescription = serde_json::from_slice(&bytes)
            .map_err(|e| ProtocolError::NotSessionDescription(e.to_string()))?;
        if !desc.sdp.trim_start().starts_with("v=0") {
            return Err(ProtocolError::BadSdp("it does not start with v=0".into()));
        }
        Ok(desc)
    }
}

/// Which recordings a PLAY asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordingSelection {
    One(String),
    Many(Vec<String>),
}

impl RecordingSelection {
    pub fn ids(&self) -> Vec<String> {
        match self {
            RecordingSelection::One(id) => vec![id.clone()],
            RecordingSelection::Many(ids) => ids.clone(),
        }
    }
}

/// A message as it arrives from the client, before validation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RawClientMessage {
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub looping: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingSelection>,
    /// PLAY of a recording in progress: its session id (or its recording id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
}

/// A validated client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Record {
        offer: SessionDescription,
    },
    Play {
        offer: SessionDescription,
        looping: bool,
        recordings: Option<Vec<String>>,
    },
    /// PLAY with `"live"`: watch a recording while it is made.
    Watch {
        offer: SessionDescription,
        live: String,
    },
    Stop,
}

/// Why a client message was refused; the `Display` text is what the client sees in `ERROR`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is larger than {max} bytes", max = MAX_MESSAGE_BYTES)]
    TooLarge,
    #[error("message is not valid JSON of the form {{\"op\": ..., \"data\": ...}}: {0}")]
    NotJson(String),
    #[error("unknown op {0:?}: expected RECORD, PLAY or STOP")]
    UnknownOp(String),
    #[error("{0} needs a \"data\" field with the base64 session description")]
    MissingData(&'static str),
    #[error("data is not valid base64")]
    NotBase64,
    #[error("data is not a JSON session description: {0}")]
    NotSessionDescription(String),
    #[error("the session description must be an offer")]
    NotAnOffer,
    #[error("the offer's SDP is not valid: {0}")]
    BadSdp(String),
    #[error("PLAY takes either \"live\" or \"recording\", not both")]
    LiveAndRecording,
    #[error("\"live\" must name a session: 1 to {max} letters, digits, '-' or '_'", max = MAX_ID_CHARS)]
    BadLive,
}

/// Longest session or recording id a client may name.
pub const MAX_ID_CHARS: usize = 64;

impl ClientMessage {
    /// Parses and validates one text message from the websocket.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge);
        }
        let raw: RawClientMessage =
            serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let offer = |op: &'static str| -> Result<SessionDescription, ProtocolError> {
            let data = match &raw.data {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s,
                _ => return Err(ProtocolError::MissingData(op)),
            };
            let desc = SessionDescription::decode(data)?;
            if desc.kind != SdpKind::Offer {
                return Err(ProtocolError::NotAnOffer);
            }
            Ok(desc)
        };
        match raw.op.to_ascii_uppercase().as_str() {
            "RECORD" => Ok(ClientMessage::Record {
                offer: offer("RECORD")?,
            }),
            "PLAY" if raw.live.is_some() => {
                if raw.recording.is_some() {
                    return Err(ProtocolError::LiveAndRecording);
                }
                let live = raw.live.clone().unwrap_or_default();
                let valid = (1..=MAX_ID_CHARS).contains(&live.len())
                    && live
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(ProtocolError::BadLive);
                }
                Ok(ClientMessage::Watch {
                    offer: offer("PLAY")?,
                    live,
                })
            }
            "PLAY" => Ok(ClientMessage::Play {
                offer: offer("PLAY")?,
                looping: raw.looping.unwrap_or(true),
                recordings: raw.recording.as_ref().map(RecordingSelection::ids),
            }),
            "STOP" => Ok(ClientMessage::Stop),
            // Echo at most a short prefix: a client must not make the server repeat a megabyte.
            _ => Err(ProtocolError::UnknownOp(raw.op.chars().take(32).collect())),
        }
    }

    /// The JSON text a client sends for this request.
    pub fn to_json(&self) -> String {
        let raw = match self {
            ClientMessage::Record { offer } => RawClientMessage {
                op: "RECORD".into(),
                data: Some(serde_json::Value::String(offer.encode())),
                ..Default::default()
            },
            ClientMessage::Play {
                offer,
                looping,
                recordings,
            } => RawClientMessage {
                op: "PLAY".into(),
                data: Some(serde_json::Value::String(offer.encode())),
                looping: Some(*looping),
                recording: recordings.clone().map(RecordingSelection::Many),
                ..Default::default()
            },
            ClientMessage::Watch { offer, live } => RawClientMessage {
                op: "PLAY".into(),
                data: Some(serde_json::Value::String(offer.encode())),
                live: Some(live.clone()),
                ..Default::default()
            },
            ClientMessage::Stop => RawClientMessage {
                op: "STOP".into(),
                ..Default::default()
            },
        };
        serde_json::to_string(&raw).unwrap_or_default()
    }
}

/// Messages from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "data", rename_all = "UPPERCASE")]
pub enum ServerMessage {
    /// base64(JSON answer)
    Answer(String),
    Error(String),
    Recording(RecordingMeta),
    #[serde(rename = "NOWPLAYING")]
    NowPlaying(NowPlaying),
    Skipped(Skipped),
    State(SessionState),
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Lifecycle of a stored recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Being written right now.
    Recording,
    /// Finished cleanly.
    Complete,
    /// Found unfinished after a crash and repaired at startup.
    Recovered,
    /// Could not be written or repaired; kept for inspection, not played.
    Failed,
}

/// Metadata of one recording, as listed by `/api/recordings` and sent in `RECORDING`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingMeta {
    /// Time-sortable id (creation time in ms, then a random suffix).
    pub id: String,
    pub name: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    pub duration_ms: u64,
    /// None when the recording has no video.
    pub video_codec: Option<VideoCodec>,
    pub width: u32,
    pub height: u32,
    pub video_frames: u64,
    pub audio: bool,
    pub audio_frames: u64,
    pub bytes: u64,
    pub state: RecordingState,
    pub container: Container,
    /// Why the recording ended early, if it did (disk full, limit reached...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RecordingMeta {
    /// Whether the recording can be played back.
    pub fn playable(&self) -> bool {
        matches!(
            self.state,
            RecordingState::Complete | RecordingState::Recovered
        ) && self.duration_ms > 0
    }

    /// MIME type of the media file.
    pub fn mime_type(&self) -> &'static str {
        self.container.mime_type()
    }
}

/// A recording's file format (`"webm"` or `"mp4"` on the wire and on disk); anything else is
/// refused when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// WebM: VP8 video, Opus audio.
    Webm,
    /// Fragmented MP4: H264 video, Opus audio.
    Mp4,
}

impl Container {
    /// The file extension, also the wire name.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Webm => "webm",
            Container::Mp4 => "mp4",
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Container::Webm => "video/webm",
            Container::Mp4 => "video/mp4",
        }
    }
}

impl std::fmt::Display for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// A recording's video codec (`"h264"` or `"vp8"` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    Vp8,
}

impl VideoCodec {
    /// The codec's name as people know it.
    pub fn label(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
        }
    }
}

/// Sent when a clip starts playing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NowPlaying {
    pub id: String,
    pub name: String,
    /// 0-based position in this pass over the playlist.
    pub index: usize,
    pub count: usize,
}

/// Sent when a clip is skipped (viewer lacks its codec, deleted, unreadable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// What a session is doing (`STATE`'s `phase`; lowercase on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionPhase {
    Recording,
    Playing,
    /// A playback played through.
    Finished,
    /// A playback ended by STOP, the viewer going away, or server shutdown.
    Stopped,
}

impl SessionPhase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionPhase::Recording => "recording",
            SessionPhase::Playing => "playing",
            SessionPhase::Finished => "finished",
            SessionPhase::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for SessionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress of a session, sent about once a second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// A playback ends with `Finished` or `Stopped`.
    pub phase: SessionPhase,
    pub elapsed_ms: u64,
    pub bytes: u64,
    pub frames: u64,
}

impl SessionState {
    /// The last STATE of a playback: finished or stopped.
    pub fn is_end(&self) -> bool {
        matches!(self.phase, SessionPhase::Finished | SessionPhase::Stopped)
    }
}

/// What a session does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Record,
    Play,
}

/// `POST /api/sessions/{id}/forwards`: send a live recording as plain RTP to `host:port`
/// (video on `port`, audio on `port + 2`; RTCP would be the next odd ports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRequest {
    pub host: String,
    pub port: u16,
    /// The video codec to send: the recording's own when absent; the other one is
    /// transcoded (for a receiver that takes only H264, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<VideoCodec>,
}

/// `POST /api/forwards`: play stored recordings as plain RTP to `host:port` (video on
/// `port`, audio on `port + 2`), in one video codec: `codec`, or the first clip's (clips in
/// the other are transcoded). The answer is the forward, under the playback's session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackForwardRequest {
    pub host: String,
    pub port: u16,
    /// Recording ids in order; every recording when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recordings: Option<Vec<String>>,
    /// Start again after the last one (default: play once).
    #[serde(default, rename = "loop")]
    pub looping: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<VideoCodec>,
}

/// One plain-RTP track of a forward: where it goes and how the receiver reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardTrack {
    pub port: u16,
    /// `h264`, `vp8` or `opus`.
    pub codec: String,
    pub payload_type: u8,
    pub ssrc: u32,
}

/// A running forward, as `POST` and `GET /api/sessions/{id}/forwards` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardInfo {
    /// Its number within the session (for `DELETE .../forwards/{n}` and `.../{n}/sdp`).
    pub id: u64,
    /// The recording session it forwards.
    pub session: String,
    pub host: String,
    pub video: ForwardTrack,
    pub audio: ForwardTrack,
    /// Where the SDP a receiver reads is served.
    pub sdp_url: String,
    /// Packets sent so far.
    pub packets: u64,
}

/// `POST /api/ingest`: an RTP ingest listening for its stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestInfo {
    /// The recording session (`DELETE /api/sessions/{id}` ends it; `/whep/live/{id}` and
    /// `PLAY` with `"live"` watch it).
    pub session: String,
    /// The address the ports are bound on.
    pub address: String,
    /// `{port, codec, payload_type}` of each track; `ssrc` is 0 (the sender's own).
    pub video: ForwardTrack,
    pub audio: Option<ForwardTrack>,
}

/// One live session, as listed by `GET /api/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub kind: SessionKind,
    /// The client's IP address.
    pub peer: String,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// Bytes written (recording) so far; 0 for a playback.
    pub bytes: u64,
    /// Frames recorded or played so far.
    pub frames: u64,
    /// The recording being written or the clip being played, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
}

/// Body of `PATCH /api/recordings/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_b64() -> String {
        SessionDescription {
            kind: SdpKind::Offer,
            sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into(),
        }
        .encode()
    }

    #[test]
    fn only_finished_and_stopped_end_a_session() {
        // (wire text, phase, ends a session); anything else on the wire is refused.
        let cases = [
            ("finished", Some(SessionPhase::Finished), true),
            ("stopped", Some(SessionPhase::Stopped), true),
            ("playing", Some(SessionPhase::Playing), false),
            ("recording", Some(SessionPhase::Recording), false),
            ("", None, false),
            ("Finished", None, false),
            ("paused", None, false),
        ];
        for (wire, phase, end) in cases {
            let json = format!(r#"{{"phase":"{wire}","elapsed_ms":0,"bytes":0,"frames":0}}"#);
            let parsed = serde_json::from_str::<SessionState>(&json).ok();
            assert_eq!(parsed.as_ref().map(|s| s.phase), phase, "{wire}");
            if let Some(s) = parsed {
                assert_eq!(s.is_end(), end, "{wire}");
                assert_eq!(serde_json::to_string(&s).unwrap(), json, "round trip");
                assert_eq!(s.phase.to_string(), wire);
            }
        }
    }

    #[test]
    fn containers_and_codecs_have_one_spelling() {
        for (wire, c) in [("webm", Container::Webm), ("mp4", Container::Mp4)] {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{wire}\""));
            assert_eq!(c.to_string(), wire);
        }
        for bad in ["\"WEBM\"", "\"mkv\"", "\"\""] {
            assert!(serde_json::from_str::<Container>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<VideoCodec>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::from_str::<VideoCodec>("\"vp8\"").unwrap(),
            VideoCodec::Vp8
        );
        assert_eq!(
            serde_json::from_str::<VideoCodec>("\"h264\"").unwrap(),
            VideoCodec::H264
        );
    }

    #[test]
    fn parses_seed_messages_and_rejects_bad_ones() {
        let offer = offer_b64();
        let answer = SessionDescription {
            kind: SdpKind::Answer,
            sdp: "v=0\r\n".into(),
        }
        .encode();
        let not_sdp = B64.encode(br#"{"type":"offer","sdp":"hello"}"#);
        let cases: Vec<(String, Result<&str, ProtocolError>)> = vec![
            (
                format!(r#"{{"op":"RECORD","data":"{offer}"}}"#),
                Ok("record"),
            ),
            (
                format!(r#"{{"op":"PLAY","data":"{offer}"}}"#),
                Ok("play-loop"),
            ),
            (
                format!(r#"{{"op":"PLAY","data":"{offer}","loop":false,"recording":"a"}}"#),
                Ok("play-once-a"),
            ),
            (r#"{"op":"STOP"}"#.into(), Ok("stop")),
            (
                format!(r#"{{"op":"PLAY","data":"{offer}","live":"s-1_a"}}"#),
                Ok("watch-s-1_a"),
            ),
            (
                format!(r#"{{"op":"PLAY","data":"{offer}","live":"s1","recording":"a"}}"#),
                Err(ProtocolError::LiveAndRecording),
            ),
            (
                format!(r#"{{"op":"PLAY","data":"{offer}","live":""}}"#),
                Err(ProtocolError::BadLive),
            ),
            (
                format!(r#"{{"op":"PLAY","data":"{offer}","live":"../etc"}}"#),
                Err(ProtocolError::BadLive),
            ),
            (
                format!(
                    r#"{{"op":"PLAY","data":"{offer}","live":"{}"}}"#,
                    "a".repeat(65)
                ),
                Err(ProtocolError::BadLive),
            ),
            (
                r#"{"op":"PLAY","live":"s1"}"#.into(),
                Err(ProtocolError::MissingData("PLAY")),
            ),
            (
                "not json".into(),
                Err(ProtocolError::NotJson(String::new())),
            ),
            (
                r#"{"op":"DANCE"}"#.into(),
                Err(ProtocolError::UnknownOp("DANCE".into())),
            ),
            (
                r#"{"op":"RECORD"}"#.into(),
                Err(ProtocolError::MissingData("RECORD")),
            ),
            (
                r#"{"op":"RECORD","data":"%%%"}"#.into(),
                Err(ProtocolError::NotBase64),
            ),
            (
                format!(r#"{{"op":"RECORD","data":"{}"}}"#, B64.encode("[1]")),
                Err(ProtocolError::NotSessionDescription(String::new())),
            ),
            (
                format!(r#"{{"op":"RECORD","data":"{answer}"}}"#),
                Err(ProtocolError::NotAnOffer),
            ),
            (
                format!(r#"{{"op":"RECORD","data":"{not_sdp}"}}"#),
                Err(ProtocolError::BadSdp(String::new())),
            ),
            (
                format!(
                    r#"{{"op":"STOP","data":"{}"}}"#,
                    "x".repeat(MAX_MESSAGE_BYTES)
                ),
                Err(ProtocolError::TooLarge),
            ),
        ];
        for (text, want) in cases {
            let got = ClientMessage::parse(&text);
            match (got, want) {
                (Ok(ClientMessage::Record { .. }), Ok("record")) => {}
                (
                    Ok(ClientMessage::Play {
                        looping: true,
                        recordings: None,
                        ..
                    }),
                    Ok("play-loop"),
                ) => {}
                (
                    Ok(ClientMessage::Play {
                        looping: false,
                        recordings: Some(r),
                        ..
                    }),
                    Ok("play-once-a"),
                ) if r == ["a"] => {}
                (Ok(ClientMessage::Stop), Ok("stop")) => {}
                (Ok(ClientMessage::Watch { live, .. }), Ok("watch-s-1_a")) if live == "s-1_a" => {}
                (Err(e), Err(w)) => assert_eq!(
                    std::mem::discriminant(&e),
                    std::mem::discriminant(&w),
                    "{text:.80}: got {e}"
                ),
                (got, want) => panic!("{text:.80}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn client_messages_round_trip() {
        let offer = SessionDescription::decode(&offer_b64()).unwrap();
        for msg in [
            ClientMessage::Record {
                offer: offer.clone(),
            },
            ClientMessage::Play {
                offer: offer.clone(),
                looping: false,
                recordings: Some(vec!["x".into(), "y".into()]),
            },
            ClientMessage::Watch {
                offer: offer.clone(),
                live: "s1".into(),
            },
            ClientMessage::Stop,
        ] {
            assert_eq!(ClientMessage::parse(&msg.to_json()).unwrap(), msg);
        }
    }

    #[test]
    fn server_messages_use_the_seed_shape() {
        assert_eq!(
            ServerMessage::Answer("QQ==".into()).to_json(),
            r#"{"op":"ANSWER","data":"QQ=="}"#
        );
        assert_eq!(
            ServerMessage::Error("boom".into()).to_json(),
            r#"{"op":"ERROR","data":"boom"}"#
        );
        let np = ServerMessage::NowPlaying(NowPlaying {
            id: "i".into(),
            name: "n".into(),
            index: 1,
            count: 2,
        });
        assert!(
            np.to_json()
                .starts_with(r#"{"op":"NOWPLAYING","data":{"id":"i""#)
        );
        let back: ServerMessage = serde_json::from_str(&np.to_json()).unwrap();
        assert_eq!(back, np);
    }
}
