"""One aiortc client for both servers: N concurrent recording peers from one process.

usage: client.py {janus,ours} BASE_URL MEDIA.webm [--streams N] [--connect-timeout S]

  janus  BASE_URL is Janus's HTTP transport (http://127.0.0.1:PORT/janus): per peer a Janus
         session + a janus.plugin.recordplay handle, {"request": "record"} with the offer,
         the answer from the long poll, keepalives; at the end "stop" and "destroy".
  ours   BASE_URL is the server (http://127.0.0.1:PORT): per peer POST /whip?name=..., the
         answer in the reply, DELETE on the Location at the end.

Every peer sends the same pre-encoded VP8 + Opus packets of MEDIA (read once with PyAV, not
decoded), looped at real-time pace, so neither the client's CPU nor the bytes differ between
the servers. Why not aiortc's MediaPlayer(decode=False, loop=True): on every loop after the
first it hands the packets over as fast as it can read them (its pacing and RTP timestamps
restart from 0 on seek), i.e. a burst instead of a 30 fps stream. PacketTrack below replays
the same packets through the same aiortc path (encoder.pack(), no re-encoding) with a pts
offset per lap and a wall-clock pace.

Prints JSON lines on stdout: {"event": "ready", ...} once every peer is connected and the
server confirms it receives both audio and video, then {"event": "done", ...} after SIGTERM
or SIGINT (peers stopped, recordings closed). Logs go to stderr. Exit 0 = all went well.
"""
import argparse, asyncio, concurrent.futures, json, os, signal, sys, time
import urllib.error, urllib.parse, urllib.request, uuid

import av
from aiortc import (MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender,
                    RTCSessionDescription)
from aiortc.mediastreams import MediaStreamError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "interop"))
import common  # noqa: E402  (interop/common.py: the loopback patch and the HTTP helper)


def log(*a):
    print("client:", *a, file=sys.stderr, flush=True)


# --- pre-encoded media -------------------------------------------------------------------
class Clip:
    """One stream of MEDIA in memory: [(pts relative to the first packet, bytes)], the
    stream's time base and the length of one lap (last pts + one packet's duration)."""

    def __init__(self, packets, time_base):
        first = packets[0][0]
        self.packets = [(pts - first, data) for pts, data in packets]
        steps = sorted(b[0] - a[0] for a, b in zip(self.packets, self.packets[1:]))
        self.lap = self.packets[-1][0] + steps[len(steps) // 2]  # + the median step
        self.time_base = time_base


def load_clips(path):
    """{"video": Clip, "audio": Clip} from a WebM, demuxed without decoding."""
    with av.open(path) as c:
        streams = {s.type: s for s in c.streams if s.type in ("video", "audio")}
        raw = {k: [] for k in streams}
        for p in c.demux(*streams.values()):
            if p.size and p.pts is not None:
                raw[p.stream.type].append((p.pts, bytes(p)))
        tbs = {k: s.time_base for k, s in streams.items()}
    codecs = {k: s.codec_context.name for k, s in streams.items()}
    if codecs != {"video": "vp8", "audio": "opus"}:
        sys.exit(f"client: {path} must hold VP8 + Opus, has {codecs}")
    return {k: Clip(sorted(raw[k], key=lambda x: x[0]), tbs[k]) for k in raw}


class PacketTrack(MediaStreamTrack):
    """Hands aiortc one encoded packet per recv(), looping the clip with pts = lap * lap
    length + pts in the clip, and sleeping until that pts is due on the wall clock. The two
    tracks of a peer share `clock` (a one-element list: the peer's start time) so audio and
    video leave together."""

    def __init__(self, kind, clip, clock):
        super().__init__()
        self.kind, self.clip, self.clock = kind, clip, clock
        self.index = self.sent = self.bytes = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        clip = self.clip
        lap, i = divmod(self.index, len(clip.packets))
        pts_in_clip, data = clip.packets[i]
        pts = lap * clip.lap + pts_in_clip
        if self.clock[0] is None:
            self.clock[0] = time.monotonic()
        delay = self.clock[0] + float(pts * clip.time_base) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(data)
        packet.pts, packet.time_base = pts, clip.time_base
        self.index += 1
        self.sent += 1
        self.bytes += len(data)
        return packet


# --- HTTP --------------------------------------------------------------------------------
# urllib in threads: simple and independent of both servers. Janus's long polls each hold a
# thread for up to 30 s, so the pool gets its own size (the default one has cpus + 4 threads).


async def http(method, url, body=None, ctype="application/json"):
    """interop/common.py's request helper, with JSON by default and room for Janus's 30 s
    long polls."""
    return await common.http(method, url, body, ctype=ctype, timeout=40)


async def janus_post(url, msg):
    msg = dict(msg, transaction=uuid.uuid4().hex[:12])
    status, _, text = await http("POST", url, json.dumps(msg))
    reply = json.loads(text) if status == 200 else {"janus": "error", "status": status}
    if reply.get("janus") == "error":
        raise RuntimeError(f"Janus {msg['janus']} failed: {text[:300]}")
    return reply


def answer_codec(sdp, kind):
    """The first codec of the answer's m=<kind> line: what the server will receive."""
    pts, names = None, {}
    for line in sdp.splitlines():
        if line.startswith(f"m={kind} "):
            pts = line.split()[3:]
        elif line.startswith("m="):
            if pts is not None:
                break
        elif pts is not None and line.startswith("a=rtpmap:"):
            pt, name = line[9:].split(" ", 1)
            names[pt] = name.split("/")[0].lower()
    return next((names[p] for p in pts or [] if p in names), None)


# --- one recording peer ------------------------------------------------------------------
class Peer:
    def __init__(self, index, clips):
        self.name = f"sidebyside-{index}"
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # loopback: no STUN
        clock = [None]
        self.tracks = {k: PacketTrack(k, clips[k], clock) for k in ("video", "audio")}
        self.senders = {}
        for kind, track in self.tracks.items():
            t = self.pc.addTransceiver(track, direction="sendonly")
            # Offer one codec per kind (VP8 alone: no H264, no RTX) so both servers take the
            # same one, the one our packets are in.
            want = {"video": "video/vp8", "audio": "audio/opus"}[kind]
            t.setCodecPreferences([c for c in RTCRtpSender.getCapabilities(kind).codecs
                                   if c.mimeType.lower() == want])
            self.senders[kind] = t.sender
        self.server_receiving = set()  # kinds the server said it receives (Janus "media")
        self.answer = {}

    async def offer(self):
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers all
        return self.pc.localDescription.sdp

    async def accept(self, sdp):
        self.answer = {k: answer_codec(sdp, k) for k in ("video", "audio")}
        # "a=candidate:foundation component proto priority ADDRESS port typ host": the
        # server's addresses (127.0.0.1 only, or the shim / --ice-ip did not work).
        self.answer["candidates"] = sorted({l.split()[4] for l in sdp.splitlines()
                                            if l.startswith("a=candidate:")})
        if (self.answer["video"], self.answer["audio"]) != ("vp8", "opus"):
            raise RuntimeError(f"{self.name}: the answer took {self.answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def receiver_reports(self):
        """Kinds for which the server sent an RTCP receiver report (so it gets our RTP)."""
        seen = set()
        for kind, s in self.senders.items():
            stats = await s.getStats()
            if any(st.type == "remote-inbound-rtp" for st in stats.values()):
                seen.add(kind)
        return seen

    async def summary(self):
        out = {"name": self.name, "state": self.pc.connectionState}
        for kind, s in self.senders.items():
            st = {x.type: x for x in (await s.getStats()).values()}
            o, r = st.get("outbound-rtp"), st.get("remote-inbound-rtp")
            out[kind] = {"frames": self.tracks[kind].sent, "payload_bytes": self.tracks[kind].bytes,
                         "rtp_packets": o.packetsSent if o else None,
                         "rtp_bytes": o.bytesSent if o else None,
                         "lost_reported": r.packetsLost if r else None}
        return out


class OursPeer(Peer):
    async def start(self, base):
        status, hdrs, body = await http("POST", f"{base}/whip?name={self.name}",
                                        await self.offer(), "application/sdp")
        if status != 201:
            raise RuntimeError(f"{self.name}: WHIP POST answered {status}: {body[:300]}")
        self.resource = urllib.parse.urljoin(base + "/whip", hdrs.get("Location"))
        await self.accept(body)

    async def stop(self):
        # The server answers the DELETE once the file is finalized (README).
        self.stop_status = (await http("DELETE", self.resource))[0]
        await self.pc.close()
        return self.stop_status in (200, 204)


class JanusPeer(Peer):
    async def start(self, base):
        self.base = base
        sid = (await janus_post(base, {"janus": "create"}))["data"]["id"]
        self.session = f"{base}/{sid}"
        hid = (await janus_post(self.session, {"janus": "attach",
                                               "plugin": "janus.plugin.recordplay"}))["data"]["id"]
        self.handle = f"{self.session}/{hid}"
        self.events = asyncio.Queue()  # plugin events (with their jsep), from the long poll
        self.polling = True
        self.tasks = [asyncio.create_task(self.poll()), asyncio.create_task(self.keepalive())]
        await janus_post(self.handle, {"janus": "message",
                                       "body": {"request": "record", "name": self.name},
                                       "jsep": {"type": "offer", "sdp": await self.offer()}})
        ev = await self.plugin_event()
        result = ev["plugindata"]["data"].get("result", {})
        if result.get("status") != "recording" or "jsep" not in ev:
            raise RuntimeError(f"{self.name}: record refused: {json.dumps(ev)[:300]}")
        self.recording_id = result.get("id")
        await self.accept(ev["jsep"]["sdp"])
        # Our offer carried every candidate; tell Janus there are no more (half-trickle).
        await janus_post(self.handle, {"janus": "trickle", "candidate": {"completed": True}})

    async def plugin_event(self, timeout=15):
        return await asyncio.wait_for(self.events.get(), timeout)

    async def poll(self):
        """Janus's HTTP long poll: each GET returns pending events or, after 30 s, a
        keepalive. Plugin events go to self.events; "media" events say what Janus receives."""
        while self.polling:
            try:
                status, _, text = await http("GET", f"{self.session}?maxev=10")
            except Exception as e:  # a poll cut by the end of the session
                if self.polling:
                    log(f"{self.name}: long poll failed: {e}")
                    await asyncio.sleep(0.5)
                continue
            if status != 200:
                break
            evs = json.loads(text)
            for ev in evs if isinstance(evs, list) else [evs]:
                kind = ev.get("janus")
                if kind == "event" and "plugindata" in ev:
                    self.events.put_nowait(ev)
                elif kind == "media" and ev.get("receiving"):
                    self.server_receiving.add(ev.get("type"))
                elif kind in ("hangup", "detached") and self.polling:
                    log(f"{self.name}: Janus says {kind}: {ev.get('reason', '')}")

    async def keepalive(self):
        while self.polling:  # the session times out after 60 s of silence
            await asyncio.sleep(25)
            await janus_post(self.session, {"janus": "keepalive"})

    async def stop(self):
        ok = True
        try:
            await janus_post(self.handle, {"janus": "message", "body": {"request": "stop"}})
            while True:  # "stopped" closes the .mjr files
                res = (await self.plugin_event(10))["plugindata"]["data"].get("result")
                if isinstance(res, dict) and res.get("status") == "stopped":
                    break
        except Exception as e:
            log(f"{self.name}: stop: {e!r}")
            ok = False
        self.polling = False
        await janus_post(self.session, {"janus": "destroy"})
        for t in self.tasks:
            t.cancel()
        await self.pc.close()
        return ok


# --- the run -----------------------------------------------------------------------------
async def main(a):
    # Every peer may hold a request at once (Janus's long polls): threads for all of them.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=2 * a.streams + 8))
    common.loopback_only()
    clips = load_clips(a.media)
    cls = {"janus": JanusPeer, "ours": OursPeer}[a.server]
    peers = [cls(i, clips) for i in range(a.streams)]
    t0 = time.monotonic()
    await asyncio.gather(*(p.start(a.base) for p in peers))
    log(f"{len(peers)} peers answered in {time.monotonic() - t0:.2f} s")

    # Ready = every peer connected, and for each the server confirms audio and video: an
    # RTCP receiver report for our SSRCs (both servers send them) or Janus's "media" event.
    both = {"video", "audio"}
    deadline = time.monotonic() + a.connect_timeout
    while True:
        states = [p.pc.connectionState for p in peers]
        confirmed = [p.server_receiving | await p.receiver_reports() for p in peers]
        if all(s == "connected" for s in states) and all(c >= both for c in confirmed):
            break
        if time.monotonic() > deadline or "failed" in states:
            print(json.dumps({"event": "failed", "states": states,
                              "confirmed": [sorted(c) for c in confirmed]}), flush=True)
            await asyncio.gather(*(p.pc.close() for p in peers), return_exceptions=True)
            return 1
        await asyncio.sleep(0.2)
    print(json.dumps({"event": "ready", "server": a.server, "streams": a.streams,
                      "ready_s": round(time.monotonic() - t0, 2),
                      "answer": peers[0].answer,
                      "janus_media_events": sum(bool(p.server_receiving) for p in peers)}),
          flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    summaries = [await p.summary() for p in peers]
    oks = await asyncio.gather(*(p.stop() for p in peers), return_exceptions=True)
    ok = all(o is True for o in oks)
    print(json.dumps({"event": "done", "ok": ok, "stopped": [repr(o) for o in oks],
                      "peers": summaries}), flush=True)
    return 0 if ok else 2


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("server", choices=["janus", "ours"])
    p.add_argument("base")
    p.add_argument("media")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--connect-timeout", type=float, default=30)
    rc = asyncio.run(main(p.parse_args()))
    # Exit without joining the HTTP threads: a Janus long poll still pending holds one for
    # up to 30 s after its session is gone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
