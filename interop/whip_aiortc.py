"""WHIP (RFC 9725) client on aiortc: pushes VP8 + Opus for N seconds, then DELETEs the session.

usage: whip_aiortc.py URL [--seconds 6] [--token T] [--name N] [--expect-status 401]
                        [--mark-base 0]
Video is 640x480@30 with the frame index (+ mark base) marked (common.py); audio a 440 Hz
tone. Prints JSON; exits 0 when the push (or the expected refusal) happened.
"""
import argparse, asyncio, fractions, math, struct, time, urllib.parse
import av
from aiortc import (MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender,
                    RTCSessionDescription, VideoStreamTrack)
from common import H, W, answer_codec, emit, http, loopback_only, mark_rows


class MarkedVideo(VideoStreamTrack):
    """30 fps (VideoStreamTrack paces it); index mark on top, a moving bar below."""
    sent, base = 0, 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        x = (self.sent * 8) % (W - 32)
        body = (b"\x50" * x + b"\xc0" * 32 + b"\x50" * (W - 32 - x)) * (H - 80)
        frame = av.VideoFrame(W, H, "yuv420p")
        frame.planes[0].update(mark_rows(self.base + self.sent) + body)
        for p in frame.planes[1:]:
            p.update(b"\x80" * p.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class Tone(MediaStreamTrack):
    """20 ms frames of 48 kHz mono s16, paced against the wall clock."""
    kind, sent, start = "audio", 0, None
    second = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 48000)))
                      for i in range(48000))

    async def recv(self):
        self.start = self.start or time.time()
        await asyncio.sleep(max(0, self.start + self.sent * 0.02 - time.time()))
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        off = (self.sent % 50) * 960 * 2
        frame.planes[0].update(self.second[off:off + 960 * 2])
        frame.sample_rate, frame.pts = 48000, self.sent * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.sent += 1
        return frame


async def main(a):
    loopback_only()
    url = a.url + ("?" + urllib.parse.urlencode({"name": a.name}) if a.name else "")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: loopback only
    video, audio = MarkedVideo(), Tone()
    video.base = a.mark_base
    vt = pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(audio, direction="sendonly")
    # Force VP8: offer it alone (no H264, no RTX) so the server cannot pick anything else.
    vt.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                            if c.mimeType.lower() == "video/vp8"])
    await pc.setLocalDescription(await pc.createOffer())  # gathers: non-trickle offer
    status, hdrs, body = await http("POST", url, pc.localDescription.sdp, a.token)
    out = {"url": url, "status": status, "location": hdrs.get("Location"),
           "etag": hdrs.get("ETag")}
    if status != 201:
        await pc.close()
        emit(dict(out, body=body[:300]), status == a.expect_status)
    out["video_codec"], out["audio_codec"] = answer_codec(body, "video"), answer_codec(body, "audio")
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    for _ in range(100):  # up to 10 s for ICE + DTLS
        if pc.connectionState in ("connected", "failed"):
            break
        await asyncio.sleep(0.1)
    out["connection"] = pc.connectionState
    if pc.connectionState == "connected":
        await asyncio.sleep(a.seconds)
    out["video_frames_sent"], out["audio_frames_sent"] = video.sent, audio.sent
    resource = urllib.parse.urljoin(url, out["location"] or "")
    out["delete_status"] = (await http("DELETE", resource, token=a.token))[0]
    await pc.close()
    emit(out, out["connection"] == "connected" and out["delete_status"] in (200, 204)
         and a.expect_status == 201)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--token")
    p.add_argument("--name")
    p.add_argument("--expect-status", type=int, default=201)
    p.add_argument("--mark-base", type=int, default=0)
    asyncio.run(main(p.parse_args()))
