#!/usr/bin/env bash
# Push H264 (constrained baseline, no B-frames) + Opus to a WHIP endpoint with ffmpeg's own
# `whip` muxer (ffmpeg >= 8; the imageio-ffmpeg wheel ships one), for SECONDS in real time.
# usage: ffmpeg_whip.sh URL [SECONDS=6] [TOKEN]     env: FFMPEG (default: imageio-ffmpeg's)
# The top 80 rows carry the frame index as 16 black/white blocks and their complement, the
# same marks as common.py, so whep_aiortc.py can check order on playback. The marks count
# from MARK_BASE (default 32768) so a viewer can tell these frames from aiortc's (from 0).
set -euo pipefail
url=${1:?usage: ffmpeg_whip.sh URL [SECONDS] [TOKEN]}
secs=${2:-6}
token=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
venv=${PION_TOOLS_DIR:-$HOME/.cache/pion-the-sky/tools}/venv
ffmpeg=${FFMPEG:-$("$venv/bin/python" -c 'import imageio_ffmpeg as i; print(i.get_ffmpeg_exe())')}

# Bit k of N + MARK_BASE (N = frame number) is block k (x = 40k); geq only runs on the strip.
bit="mod(floor((N+${MARK_BASE:-32768})/pow(2,floor(X/40))),2)"
mark="nullsrc=s=640x80:r=30,format=yuv420p,geq=lum='if(lt(Y,40),16+219*$bit,235-219*$bit)':cb=128:cr=128"
video="testsrc2=s=640x480:r=30[bg];$mark[m];[bg][m]overlay=0:0:shortest=1,format=yuv420p[out0]"

auth=()
[ -n "$token" ] && auth=(-authorization "$token")

# -re paces both lavfi inputs at real time; -g 30 gives a keyframe each second so a viewer
# joining late (or the recorder's first packets being lost) recovers quickly.
exec "$ffmpeg" -hide_banner -loglevel "${FFMPEG_LOGLEVEL:-warning}" -nostdin \
  -re -f lavfi -i "$video" \
  -re -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t "$secs" \
  -c:v libx264 -profile:v baseline -preset veryfast -tune zerolatency -bf 0 -g 30 \
  -pix_fmt yuv420p -b:v 1M \
  -c:a libopus -b:a 64k -ar 48000 -ac 2 \
  "${auth[@]}" -f whip "$url"
