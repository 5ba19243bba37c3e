//! Recording posters: made when a recording finishes (or on the first request), served as
//! JPEG, cached next to the recording, rebuilt when missing, gone with the recording.
mod common;

use std::time::Duration;

use common::*;
use media::Codec;

/// Standard deviation of the luma of an RGB picture: a real frame is not one flat colour.
fn spread(img: &image::RgbImage) -> f64 {
    let lum: Vec<f64> = img
        .pixels()
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    (lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64).sqrt()
}

#[tokio::test]
async fn each_finished_recording_has_a_poster_of_its_first_picture() {
    for (video, vcodec) in [(Codec::Vp8, "vp8"), (Codec::H264, "h264")] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), vcodec, &[]).await;
        let meta = record_fixture(&server, video).await;
        let (status, head, body) =
            get(&server, format!("/api/recordings/{}/thumbnail", meta.id)).await;
        assert_eq!(status, 200, "{video:?}: {}", String::from_utf8_lossy(&body));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: image/jpeg"),
            "{head}"
        );
        let img = image::load_from_memory_with_format(&body, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        // The 640x480 fixture, scaled to 320 wide.
        assert_eq!((img.width(), img.height()), (320, 240), "{video:?}");
        // Its first picture: the poster of the fixture's first frame, made here.
        let first = &fixture_frames(video).0[0];
        let picture = codec::Decoder::new(video)
            .unwrap()
            .decode(&first.data)
            .unwrap()
            .expect("the fixture's first frame decodes");
        assert_eq!(
            body,
            codec::poster(&picture, 320).unwrap(),
            "{video:?}: not the first picture"
        );
        assert!(
            spread(&img) > 20.0,
            "{video:?}: a flat picture (spread {})",
            spread(&img)
        );
        // Cached next to the recording; rebuilt when the file is gone.
        let cached = dir.path().join(format!("{}.jpg", meta.id));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !cached.exists() {
            assert!(tokio::time::Instant::now() < deadline, "no cached poster");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::remove_file(&cached).unwrap();
        let (status, _, again) =
            get(&server, format!("/api/recordings/{}/thumbnail", meta.id)).await;
        assert_eq!(status, 200);
        assert_eq!(again, body, "the same keyframe makes the same poster");
        assert!(cached.exists());
        // Deleting the recording deletes its poster.
        let (status, _, _) = http_async(
            server.addr,
            "DELETE",
            format!("/api/recordings/{}", meta.id),
            vec![],
            String::new(),
        )
        .await;
        assert_eq!(status, 204);
        assert!(!cached.exists(), "poster left behind");
        let (status, _, _) = get(&server, format!("/api/recordings/{}/thumbnail", meta.id)).await;
        assert_eq!(status, 404);
        let (status, _, _) = get(&server, "/api/recordings/nope/thumbnail".into()).await;
        assert_eq!(status, 400);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn older_recordings_get_posters_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let meta = record_fixture(&server, Codec::Vp8).await;
    let cached = dir.path().join(format!("{}.jpg", meta.id));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cached.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no poster after the recording"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
    // As if made before posters existed.
    std::fs::remove_file(&cached).unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cached.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no poster made at start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_recording_in_progress_has_no_poster_yet() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), "vp8", &[]).await;
    let (client, _ws) = start_recording(server.addr, Codec::Vp8).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let id = loop {
        if let Some(m) = server.state.store.list().into_iter().next() {
            break m.id;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, _, body) = get(&server, format!("/api/recordings/{id}/thumbnail")).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("still being recorded"));
    client.close().await;
    server.shutdown().await;
}
