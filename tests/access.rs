//! Access control over real HTTP and websockets: tokens, loopback trust, private reads, the
//! sign-in cookie, DNS rebinding and foreign origins.
mod common;

use std::time::Duration;

use app::protocol::{ClientMessage, RecordingMeta, ServerMessage};
use common::*;
use media::Codec;
use pion_the_sky::rtc::client::{Client, RecordOptions};

async fn record_message() -> (Client, String) {
    let (client, _) = Client::record(RecordOptions {
        video: Codec::Vp8,
        ..RecordOptions::default()
    })
    .await
    .unwrap();
    let offer = client.offer().await.unwrap();
    (client, ClientMessage::Record { offer }.to_json())
}

/// The first message a RECORD on `/ws{query}` gets, and whether the socket then closes.
async fn try_record(server: &TestServer, query: &str) -> (ServerMessage, bool) {
    let (client, msg) = record_message().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws{query}", server.addr))
        .await
        .expect("websocket connects");
    send(&mut ws, msg).await;
    let first = next_msg(&mut ws, Duration::from_secs(10)).await;
    let closed = if matches!(first, ServerMessage::Error(_)) {
        let rest = tokio::time::timeout(Duration::from_secs(5), async {
            use futures::StreamExt;
            loop {
                match ws.next().await {
                    None
                    | Some(Err(_))
                    | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                        return true;
                    }
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        rest.unwrap_or(false)
    } else {
        false
    };
    client.close().await;
    (first, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_writes_and_loopback_is_not_trusted_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &["--token=s3cret"]).await;
    let addr = server.addr;

    // Reads need nothing (not --private).
    let (status, _, _) =
        http_async(addr, "GET", "/api/recordings".into(), vec![], String::new()).await;
    assert_eq!(status, 200);
    // (credentials, status of a write)
    let id = "1764000000123-abcdef";
    let cases: Vec<(Vec<(&'static str, &'static str)>, u16)> = vec![
        (vec![], 401),
        (vec![("Authorization", "Bearer wrong")], 401),
        (vec![("Authorization", "Bearer s3cret")], 404),
        (vec![("Cookie", "pion_session=s3cret")], 404),
    ];
    for (headers, want) in cases {
        let (status, head, body) = http_async(
            addr,
            "DELETE",
            format!("/api/recordings/{id}"),
            headers.clone(),
            String::new(),
        )
        .await;
        assert_eq!(status, want, "{headers:?}: {head}");
        if want == 401 {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                error["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("token"),
                "{error}"
            );
        }
    }
    // The websocket: RECORD without the token gets an ERROR and a close; with it, an answer.
    let (first, closed) = try_record(&server, "").await;
    assert!(
        matches!(&first, ServerMessage::Error(e) if e.contains("token")),
        "{first:?}"
    );
    assert!(closed, "the refused socket is closed");
    // A wrong token in the address is refused at the upgrade.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token=wrong")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let (first, _) = try_record(&server, "?token=s3cret").await;
    assert!(matches!(first, ServerMessage::Answer(_)), "{first:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_loopback_is_trusted_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    // The default: bound to every interface, the server made a token for remote clients,
    // and this (loopback) client may still record.
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    assert!(server.state.generated_token.is_some());
    let (first, _) = try_record(&server, "").await;
    assert!(matches!(first, ServerMessage::Answer(_)), "{first:?}");
    server.shutdown().await;

    // --trust-loopback=false stands in for a remote client.
    let server = TestServer::start(dir.path(), "vp8", &["--trust-loopback=false"]).await;
    let token = server
        .state
        .generated_token
        .clone()
        .expect("a token was made");
    let (first, closed) = try_record(&server, "").await;
    assert!(
        matches!(first, ServerMessage::Error(_)) && closed,
        "{first:?}"
    );
    let (first, _) = try_record(&server, &format!("?token={token}")).await;
    assert!(matches!(first, ServerMessage::Answer(_)), "{first:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_reads_the_sign_in_cookie_rebinding_and_foreign_origins() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &["--token=s3cret", "--private"]).await;
    let addr = server.addr;
    let (status, _, _) =
        http_async(addr, "GET", "/api/recordings".into(), vec![], String::new()).await;
    assert_eq!(status, 401);
    let (status, _, _) = http_async(addr, "GET", "/metrics".into(), vec![], String::new()).await;
    assert_eq!(status, 401);
    // A browser without the token gets a page that says what to do.
    let (status, head, body) = http_async(
        addr,
        "GET",
        "/".into(),
        vec![("Accept", "text/html")],
        String::new(),
    )
    .await;
    assert_eq!(status, 401, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("token"));
    // /?token= signs the browser in: an HttpOnly, SameSite=Strict cookie and a redirect that
    // drops the token from the address.
    let (status, head, _) = http_async(
        addr,
        "GET",
        "/?token=s3cret".into(),
        vec![("Accept", "text/html")],
        String::new(),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("set-cookie: pion_session="), "{head}");
    assert!(
        lower.contains("httponly") && lower.contains("samesite=strict"),
        "{head}"
    );
    assert!(
        lower.contains("location: /\r") || lower.ends_with("location: /"),
        "{head}"
    );
    let (status, _, body) = http_async(
        addr,
        "GET",
        "/api/recordings".into(),
        vec![("Cookie", "pion_session=s3cret")],
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Vec<RecordingMeta>>(&body).unwrap(),
        vec![]
    );
    // DNS rebinding: a page on evil.example whose name now resolves to us.
    let (status, _, _) = http_async(
        addr,
        "GET",
        "/api/recordings".into(),
        vec![
            ("Host", "evil.example:8082"),
            ("Authorization", "Bearer s3cret"),
        ],
        String::new(),
    )
    .await;
    assert_eq!(status, 403);
    // CSRF: a write from a foreign page, even with the cookie the browser attaches.
    let (status, _, _) = http_async(
        addr,
        "DELETE",
        "/api/sessions/0123456789abcdef".into(),
        vec![
            ("Cookie", "pion_session=s3cret"),
            ("Origin", "http://evil.example"),
        ],
        String::new(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = http_async(
        addr,
        "DELETE",
        "/api/sessions/0123456789abcdef".into(),
        vec![("Cookie", "pion_session=s3cret")],
        String::new(),
    )
    .await;
    assert_eq!(
        status, 404,
        "the same write from our own page (no foreign Origin) gets through"
    );
    server.shutdown().await;
}
