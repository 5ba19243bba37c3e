//! Playback behaviours: many viewers, looping, one chosen recording, deletes during playback.
mod common;

use std::time::Duration;

use app::protocol::{ClientMessage, ServerMessage, SessionPhase};
use common::*;
use media::Codec;

fn now_playing(got: &Received) -> Vec<String> {
    got.messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::NowPlaying(np) => Some(np.id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_loop_choose_and_survive_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let a = record_fixture(&server, Codec::Vp8).await;
    let b = record_fixture(&server, Codec::Vp8).await;

    // Three viewers at once, each paced on its own, each gets both clips in order.
    let viewers = (0..3).map(|_| play_all_once(&server, Duration::from_secs(20)));
    for got in futures::future::join_all(viewers).await {
        assert_eq!(now_playing(&got), vec![a.id.clone(), b.id.clone()]);
        let wall = got
            .video
            .last()
            .unwrap()
            .0
            .duration_since(got.video[0].0)
            .as_secs_f64();
        assert!((wall - 7.967).abs() < 0.16, "viewer took {wall} s");
    }
    // One chosen recording, looping: it starts again after its 4 s.
    let got = play(
        &server,
        |offer| ClientMessage::Play {
            offer,
            looping: true,
            recordings: Some(vec![b.id.clone()]),
        },
        Duration::from_secs(6),
    )
    .await;
    assert_eq!(
        now_playing(&got),
        vec![b.id.clone(), b.id.clone()],
        "{:?}",
        got.messages
    );
    // Deleting the second recording while the first plays: it is skipped, the session ends.
    let store = server.state.store.clone();
    let b_id = b.id.clone();
    let deleter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        store.delete(&b_id).unwrap();
    });
    let got = play_all_once(&server, Duration::from_secs(15)).await;
    deleter.await.unwrap();
    assert_eq!(now_playing(&got), vec![a.id.clone()]);
    assert!(
        got.messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Skipped(s) if s.id == b.id)),
        "{:?}",
        got.messages
    );
    assert!(
        got.messages
            .iter()
            .any(|m| matches!(m, ServerMessage::State(s) if s.phase == SessionPhase::Finished)),
        "session finished: {:?}",
        got.messages
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_without_the_codec_gets_skips() {
    use pion_the_sky::rtc::client::{Client, ViewOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "h264", &[]).await;
    let rec = record_fixture(&server, Codec::H264).await;
    // A VP8-only viewer cannot play the H264 clip: SKIPPED names why, then an ERROR.
    let (client, _events) = Client::view(ViewOptions {
        video: vec![(Codec::Vp8, 96)],
        ..Default::default()
    })
    .await
    .unwrap();
    let offer = client.offer().await.unwrap();
    let mut ws = server.ws().await;
    send(
        &mut ws,
        ClientMessage::Play {
            offer,
            looping: true,
            recordings: None,
        }
        .to_json(),
    )
    .await;
    let answer = match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Answer(b) => app::protocol::SessionDescription::decode(&b).unwrap(),
        other => panic!("{other:?}"),
    };
    client.set_answer(&answer).await.unwrap();
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Skipped(s) => {
            assert_eq!(s.id, rec.id);
            assert!(s.reason.to_lowercase().contains("h264"), "{}", s.reason);
        }
        other => panic!("expected SKIPPED, got {other:?}"),
    }
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        ServerMessage::Error(e) => assert!(e.contains("none of the selected recordings"), "{e}"),
        other => panic!("expected ERROR, got {other:?}"),
    }
    client.close().await;
    server.shutdown().await;
}

/// STOP during playback is confirmed with `STATE stopped` (not left unanswered), which the
/// protocol type counts as the session's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_playback_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    record_fixture(&server, Codec::Vp8).await;
    let (client, _events) = pion_the_sky::rtc::client::Client::view(Default::default())
        .await
        .expect("viewer");
    let offer = client.offer().await.expect("offer");
    let mut ws = server.ws().await;
    let play = ClientMessage::Play {
        offer,
        looping: true,
        recordings: None,
    };
    send(&mut ws, play.to_json()).await;
    let ServerMessage::Answer(answer) = next_msg(&mut ws, Duration::from_secs(10)).await else {
        panic!("no ANSWER");
    };
    let answer = app::protocol::SessionDescription::decode(&answer).unwrap();
    client.set_answer(&answer).await.unwrap();
    loop {
        if let ServerMessage::NowPlaying(_) = next_msg(&mut ws, Duration::from_secs(10)).await {
            break;
        }
    }
    send(&mut ws, ClientMessage::Stop.to_json()).await;
    loop {
        match next_msg_or_state(&mut ws, Duration::from_secs(2)).await {
            ServerMessage::State(s) if s.phase == SessionPhase::Stopped => {
                assert!(s.is_end());
                break;
            }
            ServerMessage::State(s) if s.phase == SessionPhase::Playing => {}
            other => panic!("expected STATE stopped, got {other:?}"),
        }
    }
    client.close().await;
    server.shutdown().await;
}
