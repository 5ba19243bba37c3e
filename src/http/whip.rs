//! WHIP (RFC 9725) ingest and WHEP playback: the same sessions as `/ws`, over plain HTTP.
//!
//! - `POST /whip[?name=]`: an SDP offer (sendonly audio + video) records; `POST /whep` plays
//!   every recording back to back, `POST /whep/{recording}` one, `POST /whep/live/{session}`
//!   watches a recording in progress (`?loop=false` plays a playlist once; the default loops,
//!   as `/ws` PLAY does). The answer comes back with `201 Created`, the session's URL in
//!   `Location`, an `ETag` naming its ICE session and the `--ice-server`s as `Link` headers.
//! - `DELETE` on that URL ends the session (a recording is finalized before the reply).
//! - `PATCH` with `application/trickle-ice-sdpfrag` adds the client's trickled candidates
//!   (`204`). ICE restarts are not supported: a fragment with new ICE credentials, or
//!   `If-Match: *`, gets `422` (RFC 9725 §4.3.1: a session that supports one of the two
//!   answers the other with 422). A fragment for an older ICE session gets `412`.
//! - Errors: `415` wrong content type, `400` a malformed offer or fragment, `422` an offer
//!   with nothing we can use, `404` an unknown recording or session, `503` + `Retry-After`
//!   when the server is full or stopping, `429` + `Retry-After` over `--max-sessions-per-ip`.
//!   Access control (the bearer token) is the guard's (`http::access`): WHIP is a write,
//!   WHEP a read.
//! - `OPTIONS` answers CORS preflights for the origins `--allow-origin` allows.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::http::access::Who;
use crate::http::started::{self, Refusal};
use crate::rtc::{RemoteCandidate, Trickle};
use crate::session::{Event, Request, VideoChoice};
use app::protocol::{SdpKind, SessionDescription};

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// How long a DELETE waits for the session to finish (a recording's file to be finalized).
const END_TIMEOUT: Duration = Duration::from_secs(15);

/// Which protocol made a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Whip,
    Whep,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Whip => "WHIP",
            Protocol::Whep => "WHEP",
        }
    }

    fn location(self, key: &str) -> String {
        match self {
            Protocol::Whip => format!("/whip/{key}"),
            Protocol::Whep => format!("/whep/session/{key}"),
        }
    }

    /// The key in the resource's URL. A WHIP session's is its session id: ending or patching
    /// it is a write, which needs the token whenever one is set. A WHEP session's is a secret
    /// of its own: ending a playback is a read, and session ids are listed to readers by
    /// `GET /api/sessions`, so another reader must not be able to name it.
    fn key(self, session: &str) -> Result<String, Refusal> {
        match self {
            Protocol::Whip => Ok(session.to_owned()),
            Protocol::Whep => crate::random::hex(16).map_err(|e| {
                Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("no randomness for a session key: {e}"),
                )
            }),
        }
    }
}

struct Resource {
    protocol: Protocol,
    stop: CancellationToken,
    /// True once the session has ended and concluded.
    done: watch::Receiver<bool>,
    etag: String,
    /// The ICE username fragment of the client's offer.
    ufrag: Option<String>,
    trickle: Option<Trickle>,
}

/// The sessions made over WHIP and WHEP, by session id; cheap to clone.
#[derive(Clone, Default)]
pub struct Resources {
    inner: Arc<Mutex<HashMap<String, Resource>>>,
}

impl Resources {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Resource>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions still open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PublishQuery {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ViewQuery {
    #[serde(rename = "loop")]
    looping: Option<bool>,
}

/// `POST /whip`.
pub async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<PublishQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = async {
        let Ok(Query(query)) = query else {
            return plain(StatusCode::BAD_REQUEST, "the query string is not valid");
        };
        let name = match started::recording_name(query.name.as_deref()) {
            Ok(name) => name,
            Err(refusal) => return refusal.plain(),
        };
        let offer = match offer_of(&headers, &body) {
            Ok(offer) => offer,
            Err(refusal) => return refusal.plain(),
        };
        let request = Request::Record {
            offer: offer.clone(),
            name,
            video: VideoChoice::OfferPreference,
        };
        create(&state, peer, Protocol::Whip, request, &offer)
            .await
            .unwrap_or_else(|r| r.plain())
    }
    .await;
    with_cors(&state, &headers, response)
}

/// `POST /whep`: every recording, oldest first.
pub async fn view_all(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    view(state, peer, query, headers, body, None).await
}

/// `POST /whep/{recording}`: one recording.
pub async fn view_one(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    query: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    view(state, peer, query, headers, body, Some(id)).await
}

async fn view(
    state: AppState,
    peer: SocketAddr,
    query: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
    recording: Option<String>,
) -> Response {
    let response = async {
        let Ok(Query(query)) = query else {
            return plain(
                StatusCode::BAD_REQUEST,
                "the query string is not valid (loop=true or loop=false)",
            );
        };
        let offer = match offer_of(&headers, &body) {
            Ok(offer) => offer,
            Err(refusal) => return refusal.plain(),
        };
        // Everything loops by default (a channel, as /ws PLAY does); one recording plays once,
        // as the play page does.
        let looping = query.looping.unwrap_or(recording.is_none());
        let request = Request::Play {
            offer: offer.clone(),
            looping,
            recordings: recording.map(|id| vec![id]),
        };
        create(&state, peer, Protocol::Whep, request, &offer)
            .await
            .unwrap_or_else(|r| r.plain())
    }
    .await;
    with_cors(&state, &headers, response)
}

/// `POST /whep/live/{session}`: a recording in progress.
pub async fn view_live(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = async {
        let offer = match offer_of(&headers, &body) {
            Ok(offer) => offer,
            Err(refusal) => return refusal.plain(),
        };
        let request = Request::Watch {
            offer: offer.clone(),
            target,
        };
        create(&state, peer, Protocol::Whep, request, &offer)
            .await
            .unwrap_or_else(|r| r.plain())
    }
    .await;
    with_cors(&state, &headers, response)
}

/// The offer in a POST body, or why it is refused.
fn offer_of(headers: &HeaderMap, body: &Bytes) -> Result<SessionDescription, Refusal> {
    let sdp = started::text_body(headers, body, SDP, "the offer")?;
    if !sdp.trim_start().starts_with("v=0") {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the offer is not an SDP session description (it must start with v=0)",
        ));
    }
    Ok(SessionDescription {
        kind: SdpKind::Offer,
        sdp: sdp.to_owned(),
    })
}

/// Starts the session and answers with its resource once it has an SDP answer.
async fn create(
    state: &AppState,
    peer: SocketAddr,
    protocol: Protocol,
    request: Request,
    offer: &SessionDescription,
) -> Result<Response, Refusal> {
    let started = started::start(state, peer.ip(), request).await?;
    let Event::Answer(answer, trickle) = &started.first else {
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the session started without an answer",
        ));
    };
    let (answer, trickle) = (answer.sdp.clone(), trickle.clone());
    let id = started.handle.id.clone();
    let key = protocol.key(&id)?;
    let etag = format!("\"{:016x}\"", crate::random::u64());
    let (done_tx, done) = watch::channel(false);
    state.resources.lock().insert(
        key.clone(),
        Resource {
            protocol,
            stop: started.handle.stop_token(),
            done,
            etag: etag.clone(),
            ufrag: ice_ufrag(&offer.sdp),
            trickle,
        },
    );
    // Once the session has concluded, its resource goes.
    let resources = state.resources.clone();
    let resource_key = key.clone();
    started.keep(state, move || {
        resources.lock().remove(&resource_key);
        let _ = done_tx.send(true);
    });
    tracing::info!(session = %id, protocol = protocol.name(), "session created");
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&protocol.location(&key)) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    for link in ice_server_links(&state.config.ice_server) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    Ok(response)
}

/// `DELETE /whip/{session}`.
pub async fn end_whip(state: State<AppState>, id: Path<String>, headers: HeaderMap) -> Response {
    end(state, id, headers, Protocol::Whip).await
}

/// `DELETE /whep/session/{session}`.
pub async fn end_whep(state: State<AppState>, id: Path<String>, headers: HeaderMap) -> Response {
    end(state, id, headers, Protocol::Whep).await
}

async fn end(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    protocol: Protocol,
) -> Response {
    let found = {
        let mut resources = state.resources.lock();
        match resources.get(&id) {
            Some(r) if r.protocol == protocol => resources.remove(&id),
            _ => None,
        }
    };
    let Some(resource) = found else {
        let response = plain(
            StatusCode::NOT_FOUND,
            &format!(
                "no {} session has this URL (it ended, or never existed)",
                protocol.name()
            ),
        );
        return with_cors(&state, &headers, response);
    };
    resource.stop.cancel();
    let mut done = resource.done;
    let finished = tokio::time::timeout(END_TIMEOUT, done.wait_for(|d| *d)).await;
    let response = match finished {
        Ok(_) => plain(StatusCode::OK, "session ended"),
        Err(_) => plain(
            StatusCode::ACCEPTED,
            "the session is ending; its recording is still being finalized",
        ),
    };
    with_cors(&state, &headers, response)
}

/// `PATCH /whip/{session}`.
pub async fn patch_whip(
    state: State<AppState>,
    id: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(state, id, headers, body, Protocol::Whip).await
}

/// `PATCH /whep/session/{session}`.
pub async fn patch_whep(
    state: State<AppState>,
    id: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(state, id, headers, body, Protocol::Whep).await
}

async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    protocol: Protocol,
) -> Response {
    let response = patch_inner(&state, &id, &headers, &body, protocol).await;
    with_cors(&state, &headers, response)
}

async fn patch_inner(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
    protocol: Protocol,
) -> Response {
    let found = {
        let resources = state.resources.lock();
        resources
            .get(id)
            .filter(|r| r.protocol == protocol)
            .map(|r| (r.etag.clone(), r.ufrag.clone(), r.trickle.clone()))
    };
    let Some((etag, ufrag, trickle)) = found else {
        return plain(
            StatusCode::NOT_FOUND,
            &format!("no {} session has this URL", protocol.name()),
        );
    };
    if !started::content_type_is(headers, SDPFRAG) {
        let mut response = plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH takes Content-Type: application/trickle-ice-sdpfrag",
        );
        response
            .headers_mut()
            .insert("accept-patch", HeaderValue::from_static(SDPFRAG));
        return response;
    }
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if if_match == Some("*") {
        return plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restarts are not supported: end the session and start a new one",
        );
    }
    // Strong comparison (RFC 9110 §13.1.1): a weak tag never matches.
    if let Some(tag) = if_match
        && !tag.split(',').any(|t| t.trim() == etag)
    {
        return plain(
            StatusCode::PRECONDITION_FAILED,
            "the fragment is for another ICE session of this resource (If-Match)",
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return plain(StatusCode::BAD_REQUEST, "the fragment is not UTF-8 text");
    };
    let fragment = match parse_fragment(text) {
        Ok(f) => f,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    if fragment.ufrag.is_some() && fragment.ufrag != ufrag {
        return plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restarts are not supported: end the session and start a new one",
        );
    }
    let Some(trickle) = trickle else {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "this session does not take trickled candidates",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("OPTIONS, DELETE"));
        return response;
    };
    let candidates: Vec<RemoteCandidate> = fragment
        .candidates
        .into_iter()
        .map(|mut c| {
            c.ufrag = c.ufrag.or_else(|| ufrag.clone());
            c
        })
        .collect();
    match trickle.add(&candidates).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(crate::rtc::RtcError::Closed) => {
            plain(StatusCode::NOT_FOUND, "the session's connection is closed")
        }
        Err(e) => plain(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `OPTIONS` on an endpoint (`/whip`, `/whep…`): what it takes, the CORS preflight answer,
/// and the ICE servers for clients that may start a session there.
pub async fn options_endpoint(
    state: State<AppState>,
    who: Option<Extension<Who>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    options(state, who, uri, headers, true)
}

/// `OPTIONS` on a session's URL.
pub async fn options_resource(
    state: State<AppState>,
    who: Option<Extension<Who>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    options(state, who, uri, headers, false)
}

fn options(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    endpoint: bool,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    if endpoint {
        h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
        h.insert("accept-post", HeaderValue::from_static(SDP));
    } else {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("OPTIONS, PATCH, DELETE"),
        );
        h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    }
    // TURN credentials go only to clients that may start a session here (POST's rule).
    let need = crate::http::access::classify(&axum::http::Method::POST, uri.path());
    let who = who.map(|Extension(w)| w).unwrap_or_default();
    if endpoint && state.access.allowed(&who, need) {
        for link in ice_server_links(&state.config.ice_server) {
            if let Ok(v) = HeaderValue::from_str(&link) {
                h.append(header::LINK, v);
            }
        }
    }
    if let Some(origin) = allowed_origin(&state, &headers) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("OPTIONS, POST, PATCH, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, If-Match"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The request's `Origin`, when it is allowed to read our responses.
fn allowed_origin(state: &AppState, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    state.access.origin_allowed(headers).then(|| origin.clone())
}

/// Lets an allowed page read the response and its headers.
fn with_cors(state: &AppState, headers: &HeaderMap, mut response: Response) -> Response {
    if let Some(origin) = allowed_origin(state, headers) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After",
            ),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// The first `a=ice-ufrag` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|u| u.trim().to_owned())
}

/// What a trickle fragment (RFC 8840) carries.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fragment {
    ufrag: Option<String>,
    candidates: Vec<RemoteCandidate>,
}

/// Most candidates one PATCH may carry.
const MAX_FRAGMENT_CANDIDATES: usize = 64;

fn parse_fragment(text: &str) -> Result<Fragment, String> {
    let mut fragment = Fragment::default();
    let mut mid: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            fragment.ufrag = Some(u.trim().to_owned());
        } else if line.starts_with("m=") {
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim().to_owned());
        } else if let Some(c) = line.strip_prefix("a=candidate:") {
            if fragment.candidates.len() == MAX_FRAGMENT_CANDIDATES {
                return Err(format!(
                    "the fragment has more than {MAX_FRAGMENT_CANDIDATES} candidates"
                ));
            }
            // foundation component transport priority address port "typ" type ...
            let fields: Vec<&str> = c.split_whitespace().collect();
            let valid = fields.len() >= 8
                && fields[1].parse::<u16>().is_ok()
                && fields[3].parse::<u32>().is_ok()
                && fields[5].parse::<u16>().is_ok()
                && fields[6] == "typ";
            if !valid {
                return Err(format!(
                    "not an ICE candidate: {:?}",
                    line.chars().take(100).collect::<String>()
                ));
            }
            fragment.candidates.push(RemoteCandidate {
                candidate: format!("candidate:{c}"),
                mid: mid.clone(),
                ufrag: None,
            });
        } else if line.starts_with("a=")
            || line.starts_with("c=")
            || line.starts_with("v=")
            || line.starts_with("o=")
            || line.starts_with("s=")
            || line.starts_with("t=")
        {
            // a=ice-pwd, a=end-of-candidates, a=group, ...: nothing to do.
        } else {
            return Err(format!(
                "not an SDP fragment line: {:?}",
                line.chars().take(100).collect::<String>()
            ));
        }
    }
    Ok(fragment)
}

/// `--ice-server` URLs as RFC 9725 `Link` headers (TURN credentials as `username` and
/// `credential`).
fn ice_server_links(servers: &[String]) -> Vec<String> {
    servers
        .iter()
        .filter_map(|url| {
            let url = url.trim();
            let (scheme, rest) = url.split_once(':')?;
            let (userinfo, host) = match rest.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, rest),
            };
            let mut link = format!("<{scheme}:{host}>; rel=\"ice-server\"");
            if let Some(userinfo) = userinfo {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quote(user),
                    quote(pass)
                ));
            }
            Some(link)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)] // a test table
    fn fragments_table() {
        let ok: &[(&str, &str, Option<&str>, &[(&str, Option<&str>)])] = &[
            (
                "one candidate under its mid",
                "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n",
                Some("EsAw"),
                &[(
                    "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0",
                    Some("0"),
                )],
            ),
            ("end of candidates only", "a=end-of-candidates\n", None, &[]),
            ("empty", "", None, &[]),
            (
                "two sections",
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:1\na=candidate:2 1 udp 1 127.0.0.1 5002 typ host\n",
                None,
                &[
                    ("candidate:1 1 udp 1 127.0.0.1 5000 typ host", Some("0")),
                    ("candidate:2 1 udp 1 127.0.0.1 5002 typ host", Some("1")),
                ],
            ),
        ];
        for (name, text, ufrag, want) in ok {
            let got = parse_fragment(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.ufrag.as_deref(), *ufrag, "{name}");
            let got: Vec<_> = got
                .candidates
                .iter()
                .map(|c| (c.candidate.as_str(), c.mid.as_deref()))
                .collect();
            assert_eq!(got, *want, "{name}");
        }
        let bad: &[(&str, String)] = &[
            ("garbage", "hello world".into()),
            ("short candidate", "a=candidate:1 1 udp".into()),
            (
                "port not a number",
                "a=candidate:1 1 udp 1 127.0.0.1 x typ host".into(),
            ),
            (
                "no typ",
                "a=candidate:1 1 udp 1 127.0.0.1 5000 host host".into(),
            ),
            (
                "too many",
                "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\n".repeat(65),
            ),
        ];
        for (name, text) in bad {
            assert!(parse_fragment(text).is_err(), "{name}");
        }
    }

    #[test]
    fn ice_server_links_table() {
        let cases: &[(&str, &str)] = &[
            (
                "stun:stun.example.net:3478",
                "<stun:stun.example.net:3478>; rel=\"ice-server\"",
            ),
            (
                "turn:alice:s3cr\"t@turn.example.net:3478?transport=udp",
                "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\"alice\"; credential=\"s3cr\\\"t\"; credential-type=\"password\"",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(ice_server_links(&[url.to_string()]), vec![want.to_string()]);
        }
    }

    #[test]
    fn ufrag_and_etags() {
        assert_eq!(
            ice_ufrag("v=0\r\na=ice-ufrag:abcd\r\na=ice-ufrag:zzzz\r\n").as_deref(),
            Some("abcd")
        );
        assert_eq!(ice_ufrag("v=0\r\n"), None);
    }
}
