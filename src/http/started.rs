//! Sessions started by an HTTP request (WHIP, WHEP, RTP ingest), shared by their handlers:
//! reading the request body, starting the session and waiting for its first event, the HTTP
//! status of every refusal, and keeping the session running once the request is answered.
//! Each protocol renders a [`Refusal`] its own way (WHIP/WHEP as text, the JSON API as JSON).
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::AppState;
use crate::session::registry::Refused;
use crate::session::{self, Event, Rejection, Request, SessionHandle, StartError};
use app::protocol::MAX_MESSAGE_BYTES;

/// What a client is told to wait before retrying when the server is full or stopping.
pub const RETRY_AFTER_SECONDS: &str = "5";
/// How long a request waits for its session's first event (an answer, or "listening"); ICE
/// gathering is bounded well below this.
const FIRST_EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a request was refused: the status, the text for the client, and whether to send
/// `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: bool,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            retry_after: status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A session that refused its request.
    pub fn of_rejection(why: &Rejection) -> Refusal {
        let status = match why {
            Rejection::BadOffer(_) => StatusCode::BAD_REQUEST,
            Rejection::Unacceptable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Conflict(_) => StatusCode::CONFLICT,
            Rejection::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal::new(status, why.message())
    }

    /// A session that could not start (full, over the per-address limit, shutting down).
    pub fn of_start(e: &StartError) -> Refusal {
        let status = match e {
            StartError::ShuttingDown | StartError::Refused(Refused::Full(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            StartError::Refused(Refused::PerIp(_)) => StatusCode::TOO_MANY_REQUESTS,
        };
        Refusal::new(status, e.to_string())
    }

    fn finish(&self, mut response: Response) -> Response {
        if self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }

    /// As text (WHIP, WHEP).
    pub fn plain(&self) -> Response {
        self.finish(
            (
                self.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", self.message),
            )
                .into_response(),
        )
    }

    /// As the JSON API's `{"error": …}`.
    pub fn json(&self) -> Response {
        self.finish(
            (
                self.status,
                axum::Json(serde_json::json!({ "error": self.message })),
            )
                .into_response(),
        )
    }
}

/// Whether the request's `Content-Type` (without parameters) is `want`.
pub fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// The body of a request that must be `content_type` text of at most 1 MiB; `what` names it
/// in the refusals ("the offer", "the SDP").
pub fn text_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    content_type: &str,
    what: &str,
) -> Result<&'a str, Refusal> {
    if !content_type_is(headers, content_type) {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{what} must be sent as Content-Type: {content_type}"),
        ));
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is larger than 1 MiB"),
        ));
    }
    std::str::from_utf8(body)
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, format!("{what} is not UTF-8 text")))
}

/// A recording's name from `?name=`, validated as a rename is.
pub fn recording_name(name: Option<&str>) -> Result<Option<String>, Refusal> {
    name.map(crate::store::validate_name)
        .transpose()
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// A session that has said its first event. Dropping it stops the session (a client that
/// went away before its answer leaves nothing running); [`keep`](Started::keep) lets it run.
pub struct Started {
    pub handle: SessionHandle,
    pub events: mpsc::Receiver<Event>,
    pub first: Event,
}

/// Starts the session and waits for its first event; a refusal (the session's or the
/// registry's) comes back as the [`Refusal`] to answer with.
pub async fn start(state: &AppState, client: IpAddr, request: Request) -> Result<Started, Refusal> {
    let (tx, mut events) = mpsc::channel(64);
    let mut handle =
        session::start(state, client, request, tx).map_err(|e| Refusal::of_start(&e))?;
    let refusal = match tokio::time::timeout(FIRST_EVENT_TIMEOUT, events.recv()).await {
        Ok(Some(Event::Rejected(why))) => Refusal::of_rejection(&why),
        Ok(Some(Event::Error(text))) => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, text),
        Ok(Some(first)) => {
            return Ok(Started {
                handle,
                events,
                first,
            });
        }
        Ok(None) => Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the session ended before it started",
        ),
        Err(_) => Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the session did not start in time",
        ),
    };
    handle.stop();
    handle.finished().await;
    Err(refusal)
}

impl Started {
    /// Lets the session run on without its request: its later events are logged (there is no
    /// client to send them to), and `on_end` runs once it has concluded.
    pub fn keep(self, state: &AppState, on_end: impl FnOnce() + Send + 'static) {
        let Started {
            mut handle,
            mut events,
            ..
        } = self;
        state.tasks.spawn(async move {
            let session = handle.id.clone();
            while let Some(event) = events.recv().await {
                match event {
                    Event::Error(text) => tracing::info!(%session, "{text}"),
                    Event::RecordingFinished(meta) => {
                        tracing::info!(%session, recording = %meta.id, "recording finished")
                    }
                    _ => {}
                }
            }
            handle.finished().await;
            on_end();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_table() {
        let cases: &[(Rejection, u16, bool)] = &[
            (Rejection::BadOffer("x".into()), 400, false),
            (Rejection::Unacceptable("x".into()), 422, false),
            (Rejection::NotFound("x".into()), 404, false),
            (Rejection::Unavailable("x".into()), 503, true),
            (Rejection::Conflict("x".into()), 409, false),
            (Rejection::Internal("x".into()), 500, false),
        ];
        for (why, status, retry) in cases {
            let r = Refusal::of_rejection(why);
            assert_eq!(
                (r.status.as_u16(), r.retry_after),
                (*status, *retry),
                "{why:?}"
            );
        }
        for (e, status) in [
            (StartError::ShuttingDown, 503),
            (StartError::Refused(Refused::Full(1)), 503),
            (StartError::Refused(Refused::PerIp(1)), 429),
        ] {
            let r = Refusal::of_start(&e);
            assert_eq!((r.status.as_u16(), r.retry_after), (status, true), "{e:?}");
            assert_eq!(
                r.plain().headers().get(header::RETRY_AFTER).unwrap(),
                RETRY_AFTER_SECONDS
            );
        }
    }

    #[test]
    fn bodies_table() {
        let mut sdp = HeaderMap::new();
        sdp.insert(
            header::CONTENT_TYPE,
            "application/sdp; charset=utf-8".parse().unwrap(),
        );
        let big = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        let cases: &[(&HeaderMap, &[u8], Result<&str, u16>)] = &[
            (&sdp, b"v=0\r\n", Ok("v=0\r\n")),
            (&HeaderMap::new(), b"v=0\r\n", Err(415)),
            (&sdp, &big, Err(413)),
            (&sdp, &[0xff, 0xfe], Err(400)),
        ];
        for (headers, body, want) in cases {
            let got = text_body(headers, body, "application/sdp", "the offer")
                .map_err(|r| r.status.as_u16());
            assert_eq!(got, *want);
        }
        assert_eq!(recording_name(None), Ok(None));
        assert_eq!(recording_name(Some(" a ")), Ok(Some("a".into())));
        assert_eq!(
            recording_name(Some("")).map_err(|r| r.status.as_u16()),
            Err(400)
        );
    }
}
