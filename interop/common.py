"""Helpers shared by the aiortc WHIP and WHEP clients (and matched by ffmpeg_whip.sh).

Frame marks: the top 80 rows of every synthetic frame carry the frame index as 16 blocks of
40x40 px (bit k at x = 40k, white = 1), and the next 40 rows the complement, so a viewer can
tell a marked frame from any other picture and read its index after lossy coding.
"""
import asyncio
import json
import urllib.error
import urllib.request

import aioice.ice

W, H, BITS, BLOCK = 640, 480, 16, 40
ON, OFF = 235, 16  # video-range white and black


def loopback_only():
    """aioice skips 127.0.0.1 when it lists host addresses; offer loopback and nothing else,
    so the tests never touch another interface."""
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]


def mark_rows(index):
    """The 2*BLOCK rows of luma bytes (W wide) that encode `index`."""
    bits = [(index >> k) & 1 for k in range(BITS)]
    row = b"".join(bytes([ON if b else OFF]) * BLOCK for b in bits)
    inv = b"".join(bytes([OFF if b else ON]) * BLOCK for b in bits)
    return row * BLOCK + inv * BLOCK


def read_mark(frame):
    """The index marked on a decoded av.VideoFrame, or None when it carries no mark."""
    if frame.width != W or frame.height < 2 * BLOCK:
        return None
    plane = frame.reformat(format="yuv420p").planes[0]
    data, stride = memoryview(plane), plane.line_size
    index = 0
    for k in range(BITS):
        x = k * BLOCK + BLOCK // 2
        a = data[(BLOCK // 2) * stride + x] > 128
        b = data[(BLOCK + BLOCK // 2) * stride + x] > 128
        if a == b:  # the complement row disagrees: not one of our frames
            return None
        index |= a << k
    return index


async def http(method, url, body=None, token=None, ctype="application/sdp", timeout=15):
    """One blocking urllib request in a thread: (status, headers, text); the
    headers look up case-insensitively (servers may send `location`). 4xx/5xx are returned,
    not raised, since the tests check them. (Also bench/sidebyside/client.py's: JSON to
    Janus, and its long polls need a longer `timeout`.)"""
    headers = {"Content-Type": ctype} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body and body.encode(), method=method, headers=headers)

    def go():
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode(errors="replace")

    return await asyncio.to_thread(go)


def answer_codec(sdp, kind):
    """First codec name the answer lists for the m=<kind> section (what will be used)."""
    pts, rtpmap, inside = [], {}, False
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line.split()
            inside = parts[0] == f"m={kind}" and parts[1] != "0" and not pts
            pts = parts[3:] if inside else pts
        elif inside and line.startswith("a=rtpmap:"):
            pt, name = line[9:].split(" ", 1)
            rtpmap[pt] = name.split("/")[0].lower()
    return next((rtpmap[p] for p in pts if p in rtpmap), None)


def emit(summary, ok):
    print(json.dumps(summary, indent=1))
    raise SystemExit(0 if ok else 2)
