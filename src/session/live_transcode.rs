//! Live watching in another video codec: a recording in VP8 watched by a browser that takes
//! only H264 (or the reverse).
//!
//! One transcoder per recording and output codec, shared by every viewer that needs it: it
//! subscribes to the recording's [`Channel`] like a viewer, depacketizes its video, decodes,
//! re-encodes (`codec::Transcoder`: the source's timestamps and keyframes kept), packetizes,
//! and publishes into a channel of its own, which viewers join as they would the recorder's
//! (same bounded queues, same drop-to-keyframe). Audio passes through unchanged, in the
//! order it arrived. Encoding is CPU work, so the transcoder runs on a thread of its own,
//! never on the async workers; it ends when its last viewer leaves or the recording ends.
//!
//! Keyframe requests of its viewers (joining, loss, PLI/FIR) make the encoder produce one
//! (at most one per [`KEYFRAME_REQUEST_INTERVAL`]) instead of going to the recorder; the
//! recorder is asked only when the transcoder itself lost packets.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::Codec;
use media::MediaKind;
use media::depack::Depacketizer;
use media::rtp::RtpPacket;

use super::live::{Channel, KEYFRAME_REQUEST_INTERVAL, Subscription};

/// Largest RTP payload the transcoder makes (as the stored playback's scheduler).
const MTU: usize = 1200;

impl Channel {
    /// Joins this recording's video in `codec`: its own packets when it is in that codec,
    /// else the shared transcoder's for `codec` (started for the first viewer that needs
    /// it). `Ok(None)` once the recording has ended; an error when the codecs cannot be
    /// transcoded here. Called from async code: making a decoder and a thread takes about a
    /// millisecond, once per recording and codec.
    pub fn subscribe_in(self: &Arc<Self>, codec: Codec) -> Result<Option<Subscription>, String> {
        if codec == self.video {
            return Ok(self.subscribe());
        }
        // Under this lock a transcoder neither starts twice nor ends while a viewer joins it
        // (it checks for viewers and leaves the map under the same lock).
        let mut transcoded = self.transcoded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = transcoded.get(&codec)
            && let Some(sub) = existing.subscribe()
        {
            return Ok(Some(sub));
        }
        let transcoder = codec::Transcoder::new(self.video, codec, codec::EncoderConfig::default())
            .map_err(|e| e.to_string())?;
        let Some(source) = self.subscribe() else {
            return Ok(None);
        };
        let output = Arc::new(Channel::new(
            &self.session,
            &self.recording,
            &self.name,
            codec,
        ));
        let Some(first) = output.subscribe() else {
            return Ok(None);
        };
        transcoded.insert(codec, output.clone());
        // Released before the spawn: a worker that cannot start is dropped there, and its
        // `Drop` takes this lock to leave.
        drop(transcoded);
        let worker = Worker {
            recording: self.clone(),
            source,
            output,
            transcoder,
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        std::thread::Builder::new()
            .name("live-transcode".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start a live transcoder");
                format!("cannot start a transcoder: {e}")
            })?;
        Ok(Some(first))
    }

    /// Live transcoders running for this recording (for tests and metrics).
    pub fn transcoders(&self) -> usize {
        self.transcoded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// How long the transcoder waits for a packet before it checks whether anyone still watches
/// (a recorder that went quiet must not keep an unwatched transcoder alive).
const IDLE_CHECK: Duration = Duration::from_secs(1);

struct Worker {
    recording: Arc<Channel>,
    source: Subscription,
    output: Arc<Channel>,
    transcoder: codec::Transcoder,
    /// For a timed wait on the source (`None` outside a runtime: it waits untimed).
    runtime: Option<tokio::runtime::Handle>,
}

/// What the transcoder's wait for the recorder's next packet gave.
enum Next {
    Packet(super::live::LivePacket),
    Idle,
    Ended,
}

impl Worker {
    fn next(&mut self) -> Next {
        // While packets flow they are taken without a timer or a runtime hop.
        match self.source.rx.try_recv() {
            Ok(item) => return Next::Packet(item),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return Next::Ended,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
        }
        match &self.runtime {
            Some(rt) => {
                let rx = &mut self.source.rx;
                match rt.block_on(async { tokio::time::timeout(IDLE_CHECK, rx.recv()).await }) {
                    Ok(Some(item)) => Next::Packet(item),
                    Ok(None) => Next::Ended,
                    Err(_) => Next::Idle,
                }
            }
            None => match self.source.rx.blocking_recv() {
                Some(item) => Next::Packet(item),
                None => Next::Ended,
            },
        }
    }

    fn run(mut self) {
        let from = self.recording.video;
        let to = self.output.video;
        tracing::info!(recording = %self.recording.recording, ?from, ?to, "live transcoder started");
        // One depacketizer for the whole run: it keeps unwrapping timestamps across a drop
        // (the encoder's clock never steps back), and a gap makes it wait for the keyframe
        // the subscription resumes at.
        let mut depack = Depacketizer::new(from);
        let mut seq = crate::random::u16();
        let mut last_forced: Option<Instant> = None;
        let (mut frames_in, mut frames_out) = (0u64, 0u64);
        loop {
            let item = match self.next() {
                Next::Packet(item) => item,
                Next::Idle if self.output.viewers() == 0 && self.leave_if_unwatched() => break,
                Next::Idle => continue,
                Next::Ended => break,
            };
            if self.output.viewers() == 0 && self.leave_if_unwatched() {
                break;
            }
            match item.kind {
                MediaKind::Audio => {
                    self.output
                        .publish_marked(MediaKind::Audio, &item.packet, item.discontinuity)
                }
                MediaKind::Video => {
                    depack.push(item.packet);
                    while let Some(frame) = depack.pop() {
                        frames_in += 1;
                        if self.output.keyframe_asked.swap(false, Ordering::Relaxed) {
                            if last_forced.is_none_or(|t| t.elapsed() >= KEYFRAME_REQUEST_INTERVAL)
                            {
                                self.transcoder.request_keyframe();
                                last_forced = Some(Instant::now());
                            } else {
                                // Too soon: kept for a later frame.
                                self.output.keyframe_asked.store(true, Ordering::Relaxed);
                            }
                        }
                        let out = match self.transcoder.push(&frame) {
                            Ok(Some(out)) => out,
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::debug!(error = %e, "live frame not transcoded");
                                continue;
                            }
                        };
                        frames_out += 1;
                        publish_frame(&self.output, &out.data, out.ts as u32, &mut seq);
                    }
                    if depack.take_keyframe_request() {
                        self.recording.want_keyframe();
                    }
                }
            }
        }
        tracing::info!(recording = %self.recording.recording, ?to, frames_in, frames_out, "live transcoder ended");
        // `Drop` ends the output.
    }

    /// Leaves the recording's transcoders if nobody watches the output (checked under the
    /// lock that viewers join under); true when it left.
    fn leave_if_unwatched(&self) -> bool {
        let mut transcoded = self
            .recording
            .transcoded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.output.viewers() > 0 {
            return false;
        }
        self.output.close();
        forget(&mut transcoded, &self.output);
        true
    }
}

impl Drop for Worker {
    /// However the worker ends (the recording ended, nobody watches, a panic, or it never
    /// started), the output closes, its viewers see their queues end, and the recording
    /// forgets it.
    fn drop(&mut self) {
        let mut transcoded = self
            .recording
            .transcoded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.output.close();
        forget(&mut transcoded, &self.output);
    }
}

fn forget(transcoded: &mut std::collections::HashMap<Codec, Arc<Channel>>, output: &Arc<Channel>) {
    if transcoded
        .get(&output.video)
        .is_some_and(|c| Arc::ptr_eq(c, output))
    {
        transcoded.remove(&output.video);
    }
}

/// Packetizes one encoded frame and publishes it (the viewers' rewriters set SSRC and
/// payload type; the timestamp is the source frame's).
fn publish_frame(output: &Channel, data: &Bytes, ts: u32, seq: &mut u16) {
    let payloads = media::packetize::payloads(output.video, data, MTU);
    let last = payloads.len().saturating_sub(1);
    for (i, payload) in payloads.into_iter().enumerate() {
        let packet = RtpPacket {
            payload_type: 0,
            sequence_number: *seq,
            timestamp: ts,
            ssrc: 0,
            marker: i == last,
            payload,
        };
        *seq = seq.wrapping_add(1);
        output.publish(MediaKind::Video, &packet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::live::LiveHub;
    use std::time::Duration;

    fn meta() -> app::protocol::RecordingMeta {
        serde_json::from_value(serde_json::json!({
            "id": "r1", "name": "n", "created": "", "duration_ms": 0, "video_codec": "vp8",
            "width": 0, "height": 0, "video_frames": 0, "audio": true, "audio_frames": 0,
            "bytes": 0, "state": "recording", "container": "webm"
        }))
        .expect("meta")
    }

    /// The recorder's packets of `n` VP8 frames of a moving square (a keyframe first), each
    /// followed by one Opus packet.
    fn recorder_packets(n: u16) -> Vec<(MediaKind, RtpPacket)> {
        let (w, h) = (320, 240);
        let mut enc =
            codec::Encoder::new(Codec::Vp8, w, h, codec::EncoderConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut seq = 1000u16;
        for i in 0..n {
            let mut data = vec![90u8; codec::Picture::len_for(w, h)];
            for row in 0..32 {
                let start = row * w + (usize::from(i) * 4) % (w - 32);
                data[start..start + 32].fill(230);
            }
            let pic = codec::Picture {
                width: w,
                height: h,
                data,
            };
            let ts = u32::from(i) * 3000;
            let e = enc.encode(&pic, u64::from(ts), i == 0).unwrap().unwrap();
            let payloads = media::packetize::payloads(Codec::Vp8, &e.data, 1200);
            let last = payloads.len() - 1;
            for (j, payload) in payloads.into_iter().enumerate() {
                out.push((
                    MediaKind::Video,
                    RtpPacket {
                        payload_type: 96,
                        sequence_number: seq,
                        timestamp: ts,
                        ssrc: 7,
                        marker: j == last,
                        payload,
                    },
                ));
                seq += 1;
            }
            out.push((
                MediaKind::Audio,
                RtpPacket {
                    payload_type: 111,
                    sequence_number: i,
                    timestamp: u32::from(i) * 960,
                    ssrc: 8,
                    marker: false,
                    payload: Bytes::from(vec![0xfc, i as u8]),
                },
            ));
        }
        out
    }

    async fn next(sub: &mut Subscription) -> super::super::live::LivePacket {
        tokio::time::timeout(Duration::from_secs(10), sub.rx.recv())
            .await
            .expect("a packet in time")
            .expect("open")
    }

    #[tokio::test]
    async fn viewers_in_another_codec_share_one_transcoder_that_ends_with_them() {
        let hub = LiveHub::default();
        let publisher = hub.open("s1", &meta(), Codec::Vp8);
        let channel = hub.find("s1").unwrap();
        // In the recording's own codec: the recorder's channel, no transcoder.
        let direct = channel.subscribe_in(Codec::Vp8).unwrap().unwrap();
        assert!(Arc::ptr_eq(&direct.channel, &channel));
        assert_eq!(channel.transcoders(), 0);
        drop(direct);
        let mut a = channel.subscribe_in(Codec::H264).unwrap().unwrap();
        let mut b = channel.subscribe_in(Codec::H264).unwrap().unwrap();
        assert!(
            Arc::ptr_eq(&a.channel, &b.channel),
            "one transcoder for both"
        );
        assert_eq!(channel.transcoders(), 1);
        assert_eq!(
            channel.viewers(),
            1,
            "the transcoder is the recorder's one viewer"
        );
        let packets = recorder_packets(50);
        // The first 40 frames now, the last 10 after a keyframe request.
        let split = packets
            .iter()
            .enumerate()
            .filter(|(_, (k, p))| *k == MediaKind::Video && p.marker)
            .nth(39)
            .map(|(i, _)| i + 2)
            .unwrap();
        for (kind, p) in &packets[..split] {
            publisher.publish(*kind, p);
            // Paced a little, so that the transcoder's queue never fills.
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
        for (who, sub) in [("a", &mut a), ("b", &mut b)] {
            let mut depack = Depacketizer::new(Codec::H264);
            let mut dec = codec::Decoder::new(Codec::H264).unwrap();
            let (mut pictures, mut audio, mut ts) = (0, 0, Vec::new());
            while pictures < 40 || audio < 40 {
                let item = next(sub).await;
                if item.kind == MediaKind::Audio {
                    assert_eq!(item.packet.payload[1], audio as u8, "{who}: audio in order");
                    audio += 1;
                    continue;
                }
                depack.push(item.packet);
                while let Some(f) = depack.pop() {
                    if pictures == 0 {
                        assert!(f.keyframe, "{who}: starts at a keyframe");
                    }
                    let pic = dec.decode(&f.data).unwrap().expect("H264 decodes");
                    assert_eq!((pic.width, pic.height), (320, 240));
                    ts.push(f.ts);
                    pictures += 1;
                }
            }
            // The source's timestamps (the depacketizer unwraps from the first).
            assert!(ts.windows(2).all(|w| w[1] - w[0] == 3000), "{who}: {ts:?}");
        }
        // A viewer's keyframe request makes the encoder produce one (the source sends none:
        // its only keyframe was the first frame), once the interval since the last passed.
        tokio::time::sleep(KEYFRAME_REQUEST_INTERVAL).await;
        a.channel.want_keyframe();
        for (kind, p) in &packets[split..] {
            publisher.publish(*kind, p);
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
        let mut saw_key = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !saw_key && tokio::time::Instant::now() < deadline {
            let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(2), a.rx.recv()).await
            else {
                break;
            };
            if item.kind == MediaKind::Video {
                saw_key |= media::forward::starts_keyframe(Codec::H264, &item.packet.payload);
            }
        }
        assert!(saw_key, "a keyframe after the viewer's request");
        // Both leave: the transcoder ends and leaves the recorder, though the recorder sends
        // nothing more (it checks for viewers while it waits).
        drop(a);
        drop(b);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while channel.transcoders() > 0 || channel.viewers() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the unwatched transcoder ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The recording ends: a transcoder's viewers see their queue close.
        let mut c = channel.subscribe_in(Codec::H264).unwrap().unwrap();
        drop(publisher);
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while c.rx.recv().await.is_some() {}
        })
        .await;
        assert!(
            closed.is_ok(),
            "the transcoded channel closes with the recording"
        );
        assert!(channel.subscribe_in(Codec::H264).unwrap().is_none());
    }
}
