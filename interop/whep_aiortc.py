"""WHEP client on aiortc: offers recvonly audio+video, decodes what comes, DELETEs, prints JSON.

usage: whep_aiortc.py URL [--seconds 30] [--idle 3] [--token T]
Stops after --seconds, when the server ends the tracks (RTCP BYE), or after --idle seconds
without a video frame once one came. Reports the codecs aiortc really decoded, the frame
marks (common.py) as runs of increasing indices (a new run = the next clip or a loop), and
pacing: decoded frames per wall second and the most in any 1 s window.
"""
import argparse, asyncio, bisect, time, urllib.parse
import aiortc.rtcrtpreceiver as receiver
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from common import answer_codec, emit, http, loopback_only, read_mark

frames = {"video": [], "audio": []}  # (wall time, pts seconds, mark or None) per frame
decoders = []  # codec of each decoder aiortc opened, in order: what really arrived


def spy(get_decoder):
    def wrapped(codec):
        decoders.append(codec.name.lower())
        return get_decoder(codec)
    return wrapped


receiver.get_decoder = spy(receiver.get_decoder)


async def consume(track):
    """Decoded frames arrive here as av.VideoFrame / av.AudioFrame."""
    while True:
        try:
            f = await track.recv()
        except MediaStreamError:  # ended: BYE from the server or we closed
            return
        mark = read_mark(f) if track.kind == "video" else None
        frames[track.kind].append((time.monotonic(), float(f.pts * f.time_base), mark))


async def main(a):
    loopback_only()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tasks = []
    pc.on("track", lambda t: tasks.append(asyncio.ensure_future(consume(t))))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, hdrs, body = await http("POST", a.url, pc.localDescription.sdp, a.token)
    out = {"url": a.url, "status": status, "location": hdrs.get("Location")}
    if status != 201:
        await pc.close()
        emit(dict(out, body=body[:300]), False)
    out["answer"] = [answer_codec(body, "video"), answer_codec(body, "audio")]
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    t0, v = time.monotonic(), frames["video"]
    out["ended_by"] = "seconds"
    while time.monotonic() - t0 < a.seconds:
        await asyncio.sleep(0.1)
        if tasks and all(t.done() for t in tasks):
            out["ended_by"] = "server"; break
        if pc.connectionState in ("failed", "closed"):
            out["ended_by"] = "connection " + pc.connectionState; break
        if v and time.monotonic() - v[-1][0] > a.idle:
            out["ended_by"] = "idle"; break
    out["connection"] = pc.connectionState
    resource = urllib.parse.urljoin(a.url, out["location"] or "")
    out["delete_status"] = (await http("DELETE", resource, token=a.token))[0]
    await pc.close()
    # Pacing: real time means ~fps decoded per wall second and no 1 s window far above it.
    wall = v[-1][0] - v[0][0] if len(v) > 1 else 0.0
    times = [x[0] for x in v]
    peak = max((bisect.bisect_left(times, t + 1) - i for i, t in enumerate(times)), default=0)
    marks = [m for _, _, m in v if m is not None]
    runs, repeated, skipped = [], 0, 0  # runs: [first, last, count] of increasing marks
    for m in marks:
        if runs and m == runs[-1][1]:
            repeated += 1
        elif runs and runs[-1][1] < m <= runs[-1][1] + 300:  # a jump of 10 s+: next clip
            skipped += m - runs[-1][1] - 1
            runs[-1][1:] = [m, runs[-1][2] + 1]
        else:  # first frame, or the marks restarted: the next clip (or a loop) began
            runs.append([m, m, 1])
    out.update(decoders=decoders, video_frames=len(v), audio_frames=len(frames["audio"]),
               wall_s=round(wall, 2), fps=round((len(v) - 1) / wall, 1) if wall else 0, peak_1s=peak,
               pts_span_s=round(v[-1][1] - v[0][1], 2) if v else 0,
               marked=len(marks), runs=runs, repeated=repeated, skipped=skipped)
    # A session the server already ended may be gone (404); one we cut short must not be.
    gone_ok = out["ended_by"] != "seconds" and out["delete_status"] == 404
    emit(out, bool(v) and (out["delete_status"] in (200, 204) or gone_ok))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--idle", type=float, default=3)
    p.add_argument("--token")
    asyncio.run(main(p.parse_args()))
