"""Assertions for run.sh, kept out of bash. Each prints what it checked; a failure exits 1
with the reason.

  check.py recordings BASE OUT.json NAME:CODEC:SECONDS...   wait for the pushes to finalize,
      check them in GET BASE/api/recordings, write {name: recording} to OUT.json
  check.py whep SUMMARY.json RECS.json NAME...              check a whep_aiortc.py summary
      against the named recordings it should have played, in that order (looping allowed)
"""
import json, sys, time, urllib.request

FPS = 30          # both sources send 30 fps
SLACK_S = 1.5     # recorded duration vs push length
MARK_BASE = {"h264": 32768, "vp8": 0}  # ffmpeg_whip.sh pushes H264, whip_aiortc.py VP8


def fail(msg):
    print(f"interop: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def recordings(base, out, *specs):
    for _ in range(40):  # DELETE finalizes the file; give it up to 10 s
        recs = json.load(urllib.request.urlopen(f"{base}/api/recordings", timeout=5))
        if recs and all(r.get("state") != "recording" for r in recs):
            break
        time.sleep(0.25)
    found = {}
    for spec in specs:
        name, codec, secs = spec.split(":")
        mine = [r for r in recs if r.get("name") == name]
        if len(mine) != 1:
            fail(f"expected one recording named {name!r}, got {len(mine)}: {json.dumps(recs)}")
        r = found[name] = mine[0]
        print(f"  recording {name}: id={r['id']} state={r['state']} codec={r['video_codec']} "
              f"container={r['container']} {r['duration_ms']} ms {r['width']}x{r['height']} "
              f"video_frames={r['video_frames']} audio_frames={r['audio_frames']}")
        if r["state"] != "complete":
            fail(f"{name}: state is {r['state']!r}, not 'complete'")
        if r["video_codec"] != codec:
            fail(f"{name}: video_codec is {r['video_codec']!r}, pushed {codec}")
        if r["container"] != {"h264": "mp4", "vp8": "webm"}[codec]:
            fail(f"{name}: container {r['container']!r} does not fit {codec}")
        if not (r["video_frames"] > 0 and r["audio_frames"] > 0):
            fail(f"{name}: needs both video and audio frames")
        if abs(r["duration_ms"] / 1000 - float(secs)) > SLACK_S:
            fail(f"{name}: duration {r['duration_ms']} ms, pushed {secs} s (±{SLACK_S} s)")
    json.dump(found, open(out, "w"))


def whep(summary, recs, *names):
    s, r = json.load(open(summary)), json.load(open(recs))
    clips = [r[n] for n in names]
    secs = sum(c["duration_ms"] for c in clips) / 1000
    print(f"  whep {s['url']}: answer {s['answer']}, decoded {s['decoders']}: {s['video_frames']}"
          f" video / {s['audio_frames']} audio frames in {s['wall_s']} s ({s['fps']} fps, peak"
          f" {s['peak_1s']}/s, pts span {s['pts_span_s']} s), ended by {s['ended_by']};"
          f" runs of marks [first, last, count]: {s['runs']}, repeated={s['repeated']}"
          f" skipped={s['skipped']}; expected clips {[c['video_frames'] for c in clips]} frames")
    if s["status"] != 201:
        fail(f"WHEP POST answered {s['status']}")
    if not s["video_frames"] or not s["audio_frames"]:
        fail(f"decoded {s['video_frames']} video / {s['audio_frames']} audio frames")
    if s["marked"] < 0.9 * s["video_frames"]:
        fail(f"only {s['marked']} of {s['video_frames']} frames carry a readable mark")
    # Each run of increasing marks is one clip; they must come in the given order (then may
    # loop). A run is complete unless we cut it (the last one, when we stopped on time).
    runs = s["runs"]
    complete = runs if s["ended_by"] != "seconds" else runs[:-1]
    if len(complete) < len(clips):
        fail(f"{len(complete)} complete clips played, expected {len(clips)} (in {s['ended_by']})")
    for i, (first, last, n) in enumerate(runs):
        c = clips[i % len(clips)]
        base = MARK_BASE[c["video_codec"]]
        if not base <= first < base + 32768:
            fail(f"clip {i} has marks {first}..{last}: not from the {c['name']} recording")
        if n > c["video_frames"] + 2:
            fail(f"clip {i} ({c['name']}): {n} frames, more than the {c['video_frames']} recorded")
        if i < len(complete) and (first > base + FPS or n < 0.8 * c["video_frames"]):
            fail(f"clip {i} ({c['name']}): marks {first - base}..{last - base}, {n} frames; "
                 f"the recording has {c['video_frames']} (starts late or lost frames)")
    if s["repeated"]:
        fail(f"{s['repeated']} frames decoded twice in a row")
    # Real time: a burst would show a high fps/peak and a wall span shorter than the media.
    if not (0.75 * FPS <= s["fps"] <= 1.25 * FPS) or s["peak_1s"] > 1.4 * FPS:
        fail(f"not real time: {s['fps']} fps, peak {s['peak_1s']} frames in 1 s")
    if s["wall_s"] < 0.8 * secs - 0.5:
        fail(f"played {s['wall_s']} s of wall time for {secs:.1f} s of media (too fast)")


def live(summary):
    """A live viewer: the pushed frames, in order, at real-time pace, from where it joined."""
    s = json.load(open(summary))
    print(f"  live {s['url']}: decoded {s['decoders']}: {s['video_frames']} video /"
          f" {s['audio_frames']} audio frames in {s['wall_s']} s ({s['fps']} fps, peak"
          f" {s['peak_1s']}/s); runs of marks {s['runs']}, repeated={s['repeated']}"
          f" skipped={s['skipped']}")
    if s["status"] != 201:
        fail(f"WHEP live POST answered {s['status']}")
    if "vp8" not in s["decoders"] or not s["audio_frames"]:
        fail(f"decoded {s['decoders']}, {s['audio_frames']} audio frames")
    if s["video_frames"] < 4 * FPS:
        fail(f"only {s['video_frames']} frames in about 6 s of watching")
    if len(s["runs"]) != 1 or s["repeated"] or s["skipped"] > FPS // 3:
        fail(f"frames out of order or missing: runs {s['runs']}, skipped {s['skipped']}")
    if not (0.75 * FPS <= s["fps"] <= 1.25 * FPS) or s["peak_1s"] > 1.4 * FPS:
        fail(f"not real time: {s['fps']} fps, peak {s['peak_1s']} frames in 1 s")


if __name__ == "__main__":
    {"recordings": recordings, "whep": whep, "live": live}[sys.argv[1]](*sys.argv[2:])
